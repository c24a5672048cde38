"""GRPO personalization (the RePIC recipe) for RePIC Desktop. No Qt here."""
