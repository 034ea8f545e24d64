"""In-memory training data for plugin tests, and a tiny shop whose clicks contradict the base model.

In the shop, customers search by shop jargon: a product code plus a nickname ("sku ZX-41
brick"). The product they click shares no word with the query ("65 W USB-C laptop power
adapter"), while a decoy item that repeats the query's words ("brick ZX-41 sticker sheet") is
what a general-purpose model ranks first. The search engine showed the decoy above the product,
so every session gives the skip-above negative a real click log would.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from embtune.clickstream.sessions import SearchSession


@dataclass
class InMemoryTrainingData:
    """`TrainingData` over a list of sessions and an item dict."""

    search_sessions: list[SearchSession]
    items: dict[str, str]
    batch_id: str | None = field(default=None)

    def sessions(self) -> list[SearchSession]:
        return list(self.search_sessions)

    def item_texts(self, object_ids: Iterable[str] | None = None) -> dict[str, str]:
        if object_ids is None:
            return dict(self.items)
        return {
            object_id: self.items[object_id] for object_id in object_ids if object_id in self.items
        }


# (code, nickname, what the product really is)
PRODUCTS = [
    ("ZX-41", "brick", "65 W USB-C laptop power adapter"),
    ("KV-09", "puck", "wireless charging pad for phones"),
    ("QM-73", "snake", "braided lightning cable, two metres"),
    ("HB-15", "cloud", "memory foam pillow for side sleepers"),
    ("RT-28", "tank", "stainless steel thermos flask, one litre"),
    ("LP-62", "brain", "programmable thermostat with wifi"),
    ("WD-34", "beast", "cordless drill with two batteries"),
    ("NF-57", "ghost", "noise cancelling over-ear headphones"),
    ("TC-80", "rocket", "electric kettle with temperature control"),
    ("GS-12", "sheep", "merino wool hiking socks"),
    ("BY-46", "donut", "inflatable swimming ring for kids"),
    ("PJ-91", "shield", "tempered glass screen protector"),
    ("MX-23", "jelly", "silicone baking mat set"),
    ("DU-68", "hammer", "heavy duty staple gun"),
    ("SE-05", "owl", "motion sensor night light"),
    ("CA-39", "ladder", "three step folding stool"),
    ("VO-84", "egg", "portable bluetooth speaker"),
    ("FI-17", "moon", "dimmable bedside lamp"),
    ("YR-52", "sponge", "microfibre car cleaning mitt"),
    ("JE-76", "river", "countertop water filter jug"),
]
DECOYS = [
    "{nick} {code} sticker sheet",
    "{code} {nick} gift card",
    "poster of a {nick}, print {code}",
    "{nick} {code} enamel pin badge",
]
QUERIES = ["{code}", "sku {code}", "{code} {nick}", "{nick} {code}", "sku {code} {nick}"]


def shop_jargon_data(sessions_per_product: int = 4, seed: int = 0) -> InMemoryTrainingData:
    """20 products, 20 decoys and `sessions_per_product` searches per product; deterministic."""
    rng = random.Random(seed)
    items: dict[str, str] = {}
    sessions: list[SearchSession] = []
    for index, (code, nick, text) in enumerate(PRODUCTS):
        product_id, decoy_id = f"p{index:02d}", f"d{index:02d}"
        items[product_id] = text
        items[decoy_id] = DECOYS[index % len(DECOYS)].format(code=code, nick=nick)
        for number, template in enumerate(rng.sample(QUERIES, sessions_per_product)):
            other = f"p{rng.choice([i for i in range(len(PRODUCTS)) if i != index]):02d}"
            sessions.append(
                SearchSession(
                    session_id=f"s{index:02d}-{number}",
                    query=template.format(code=code, nick=nick),
                    results=(decoy_id, product_id, other),
                    clicks=(product_id,),
                )
            )
    return InMemoryTrainingData(sessions, items)
