"""Which known people and pets are probably in a photo: detector + embedder ("matcher") + exact index.

Nothing here decides: matches become *suggestions* the user confirms or rejects (service.py).
Heavy libraries (dlib, OpenCV, torch, transformers) are imported only inside the matcher modules that
need them, so importing this package or service.py costs numpy and nothing more.
"""
