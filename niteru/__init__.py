"""niteru (似てる): similar products across shops, by image and by text.

This shared package holds what every part of the service agrees on: settings, the product schema and
the vector store. It imports nothing heavy at import time.
"""

__version__ = "0.1.0"
