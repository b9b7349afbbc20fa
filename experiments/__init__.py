"""Offline experiments behind ``niteru experiments``: real vector sets and the faiss product-quantisation
study. Their libraries (faiss, NGT, PyYAML, matplotlib) come with the ``experiments`` extra."""
