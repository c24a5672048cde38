"""Helpers shared by the tests (photo corpora, file builders, harnesses, fixtures); no tests here."""
