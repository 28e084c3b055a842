"""Plain-PyTorch definitions of mindcore's ops: the specification every provider is tested against."""
