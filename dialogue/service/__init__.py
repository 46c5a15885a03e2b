"""The dialogue service: FastAPI app, persistence, API keys (see ``create_app``)."""
