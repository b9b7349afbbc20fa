"""Offline experiments: real vector sets and the faiss product-quantisation study (issue 8)."""
