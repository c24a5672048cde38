"""Captioning back end: Qwen2.5-VL processor loading, chat template and the tiny demo model."""
