"""`repic serve`: an OpenAI-compatible caption server over the project's own engine (FastAPI + uvicorn).

For one GPU where vLLM does not run (vLLM is Linux-only; the family GPU is often a Windows PC). It is a
convenience for one card: to scale over several GPUs or machines, serve the model with vLLM
(docs/serving.md) and point the app at that instead.
"""
