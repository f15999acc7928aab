"""The concept vocabulary of the corpus: what can be drawn, how it is named, what is held out.

Every tag label is a lowercase concept name. Moderation cues are harmless visual stand-ins (shapes
and text) for the policy categories of analysis/default_config.json, at severity 2 or 3.
"""

from __future__ import annotations

# object -> product category (from the config's product_categories) or None when it is no product
OBJECTS: dict[str, str | None] = {
    "ball": "toys",
    "car": None,
    "cat": None,
    "tree": None,
    "house": None,
    "cup": "home",
    "phone": "electronics",
    "shoe": "apparel",
    "bag": "apparel",
    "bottle": "food",
    "flower": None,
    "fish": None,
}
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 220),
    "yellow": (240, 210, 20),
    "orange": (245, 130, 20),
    "purple": (140, 40, 180),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SCENES: dict[str, str] = {  # scene -> the phrase that places something in it
    "beach": "on a beach",
    "forest": "in a forest",
    "city": "in a city",
    "kitchen": "in a kitchen",
    "studio": "in a studio",
    "snow": "in the snow",
}
MOTIONS: dict[str, str] = {  # motion -> present-tense verb phrase
    "bouncing": "bounces",
    "sliding": "slides",
    "spinning": "spins",
    "zooming": "zooms closer",
}
WORDS = ("SALE", "HELLO", "NEW", "WOW", "LIVE")


def word_tag(word: str) -> str:
    return f"text: {word.lower()}"


TAGS: tuple[str, ...] = (*OBJECTS, *COLOURS, *SCENES, *MOTIONS, *(word_tag(w) for w in WORDS))

# category -> {severity: (what the stand-in shows, the evidence reason)}
CUES: dict[str, dict[int, tuple[str, str]]] = {
    "weapons": {
        2: ("a small knife lies in the corner", "a knife is visible"),
        3: ("a large gun is pointed at the viewer", "a firearm is pointed at the camera"),
    },
    "violence": {
        2: ("red splatter stains a corner", "blood-like splatter"),
        3: ("red splatter covers the screen", "gore covering the frame"),
    },
    "scam_spam": {
        2: ("a FREE $$$ CLICK banner flashes", "spam giveaway overlay"),
        3: ("a FREE $$$ CLICK banner shows a prize link", "scam overlay with a fake link"),
    },
    "drugs": {
        2: ("a few pills are shown", "pills on display"),
        3: ("a syringe and pills are shown", "a syringe with pills"),
    },
    "dangerous_acts": {
        2: ("a figure stands on a roof edge", "a person on a roof edge"),
        3: ("a figure leaps off a high roof", "a person jumping from a rooftop"),
    },
    "hate": {
        2: ("a hate symbol stand-in appears small", "a hate symbol"),
        3: ("a large hate symbol banner fills the screen", "a hate symbol banner"),
    },
    "harassment": {
        2: ("the words YOU ARE UGLY mock someone", "insulting text at a person"),
        3: ("the words WE WILL FIND YOU threaten someone", "a threatening message"),
    },
}
MODERATION: tuple[str, ...] = tuple(CUES)
SEVERITIES = (2, 3)

# Combinations generated only in the test split (marked `novel`), so that memorising pairs fails.
NOVEL_COLOUR_OBJECT: frozenset[tuple[str, str]] = frozenset(
    {
        ("green", "car"),
        ("purple", "shoe"),
        ("yellow", "phone"),
        ("red", "cup"),
        ("blue", "cat"),
        ("orange", "bag"),
    }
)
NOVEL_CUE_SCENE: frozenset[tuple[str, str]] = frozenset(
    {
        ("weapons", "beach"),
        ("drugs", "studio"),
        ("scam_spam", "forest"),
        ("violence", "kitchen"),
        ("dangerous_acts", "snow"),
        ("hate", "city"),
        ("harassment", "beach"),
    }
)
