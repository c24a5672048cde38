"""The main window's pages: album browser, People & Pets, Unknown Faces, Personalize (and what only they use)."""
