"""A small shop catalogue where the base model ranks wrongly and clicks correct it.

Shoppers search in jargon ("cans", "kicks", "jumper", "brolly") and by product code; the
catalogue describes products formally, and holds look-alike distractors ("tin cans", "jumper
cables", "kick scooter") that an off-the-shelf model ranks first on word overlap. Clicks say
what shoppers meant, which is exactly what fine-tuning on the clickstream can learn.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

COLOURS = ("black", "white", "red", "blue", "green", "grey")

# jargon -> (formal product noun, feature phrases, distractors sharing the jargon word)
DOMAINS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "cans": (
        "over-ear headphones",
        ("noise cancelling", "wireless Bluetooth", "studio monitoring", "foldable travel"),
        ("Tin cans of chopped tomatoes, 6 x 400 g", "Aluminium drink cans, recycling bag of 50",
         "Canned chickpeas in water, 12 cans"),
    ),
    "kicks": (
        "sneakers",
        ("leather low-top", "running mesh", "high-top basketball", "canvas slip-on"),
        ("Kick scooter for kids, foldable aluminium frame", "Kickboxing gloves, 12 oz",
         "Football kicking tee for practice"),
    ),
    "jumper": (
        "knitted sweater",
        ("merino wool crew-neck", "chunky cable-knit", "cashmere V-neck", "cotton roll-neck"),
        ("Jumper cables for car batteries, 3 m", "Jumper wires for breadboards, pack of 120",
         "Horse show jumper poles, set of 4"),
    ),
    "brolly": (
        "umbrella",
        ("windproof folding", "automatic golf", "compact travel", "transparent dome"),
        ("Brolly holder stand for hallways", "Garden parasol base, 25 kg",
         "Rain gauge for gardens"),
    ),
    "specs": (
        "prescription eyeglasses frame",
        ("round tortoiseshell", "rimless titanium", "square acetate", "blue-light filtering"),
        ("Technical spec sheet binder, A4", "Spectrum analyser module for audio",
         "Specimen jars, set of 12"),
    ),
    "telly": (
        "television",
        ("55-inch 4K OLED", "43-inch smart LED", "65-inch QLED", "32-inch HD ready"),
        ("Telly Tubby plush toy", "Telescope for beginners, 70 mm refractor",
         "Telephone cable extension, 10 m"),
    ),
    "trainers": (
        "running shoes",
        ("cushioned road", "trail grip", "lightweight racing", "stability support"),
        ("Dog training treats, 500 g", "Personal trainer certification book",
         "Toilet training seat for toddlers"),
    ),
    "hoover": (
        "vacuum cleaner",
        ("cordless stick", "bagless cylinder", "robot", "handheld car"),
        ("Hoover Dam history book", "Hover board balance scooter", "Vacuum flask, 1 litre"),
    ),
}


@dataclass(frozen=True)
class DemoItem:
    object_id: str
    text: str


@dataclass(frozen=True)
class DemoQuery:
    query_id: str
    text: str
    relevant: frozenset[str]


QUERY_TEMPLATES = ("{colour} {jargon}", "{jargon} in {colour}", "cheap {colour} {jargon}")


def build_catalogue(seed: int = 7) -> tuple[list[DemoItem], list[DemoQuery]]:
    """One product per (jargon, colour), so every query has exactly one right answer and a
    click on it is the ground truth: the click-based report then measures real search quality."""
    rng = random.Random(seed)
    items: list[DemoItem] = []
    queries: list[DemoQuery] = []
    for jargon, (noun, features, distractors) in DOMAINS.items():
        colours = rng.sample(COLOURS, len(features))
        for f_index, (feature, colour) in enumerate(zip(features, colours, strict=True)):
            code = f"{jargon[:2].upper()}-{100 + 10 * f_index + COLOURS.index(colour)}"
            object_id = f"{jargon}-{colour}"
            items.append(DemoItem(
                object_id, f"{feature.capitalize()} {noun} in {colour}. Product code {code}."
            ))
            for t_index, template in enumerate(QUERY_TEMPLATES):
                queries.append(DemoQuery(
                    f"{jargon}-{colour}-{t_index}",
                    template.format(colour=colour, jargon=jargon),
                    frozenset({object_id}),
                ))
        for d_index, text in enumerate(distractors):
            items.append(DemoItem(f"{jargon}-distractor-{d_index}", text))
    return items, queries
