"""video-ai: per-frame video embeddings with exact timestamps."""
