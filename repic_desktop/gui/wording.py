"""Counted nouns for the GUI's text: "1 person, 2 pets", never "1 people" or a noun with a bracketed s."""
from __future__ import annotations


def count(n: int, one: str, many: str | None = None) -> str:
    """`n` with the noun in the right number; `many` for irregular plurals (person → people)."""
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def people_and_pets(people: int, pets: int) -> str:
    return f"{count(people, 'person', 'people')}, {count(pets, 'pet')}"
