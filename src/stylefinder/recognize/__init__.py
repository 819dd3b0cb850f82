"""Recognition: what garment an image shows and which colours it has."""
