"""Model work seen from the GUI: the captioning and face-indexing controllers, the model worker, the queue dock."""
