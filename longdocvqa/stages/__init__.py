"""Pipeline stages as pure modules: decisions from records and recipe settings, no adapters (render, llm, hub)."""
