"""One router per resource: health, products, search."""
