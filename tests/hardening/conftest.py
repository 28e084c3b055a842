"""The hardening tests reuse the MIND tests' tiny setup (tests/mind/tiny_setup.py)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mind"))
