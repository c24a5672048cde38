"""RePIC Desktop: personalized photo captions that name your people and pets."""

__version__ = "0.1.0"
APP_NAME = "RePIC Desktop"
