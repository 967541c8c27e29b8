"""Write the shipped probing datasets (interp/data/probe_*.json) from the lexicons below.

We wrote every lexicon here; the script only crosses them and balances the classes, so
the JSON files are reproducible: `python scripts/make_probe_data.py` rewrites them
byte for byte. Each example carries a `group`: examples that share a group (a country,
an adjective, a meaning, a sentence frame) always land on the same side of a split.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "interp" / "data"

# country, capital, language, continent: facts a 135M model mostly knows
COUNTRIES = [
    ("France", "Paris", "French", "Europe"), ("Germany", "Berlin", "German", "Europe"),
    ("Italy", "Rome", "Italian", "Europe"), ("Spain", "Madrid", "Spanish", "Europe"),
    ("Japan", "Tokyo", "Japanese", "Asia"), ("China", "Beijing", "Chinese", "Asia"),
    ("Russia", "Moscow", "Russian", "Europe"), ("Egypt", "Cairo", "Arabic", "Africa"),
    ("Greece", "Athens", "Greek", "Europe"), ("Portugal", "Lisbon", "Portuguese", "Europe"),
    ("England", "London", "English", "Europe"), ("Mexico", "Mexico City", "Spanish", "North America"),
    ("Brazil", "Brasilia", "Portuguese", "South America"), ("Argentina", "Buenos Aires", "Spanish", "South America"),
    ("Canada", "Ottawa", "English", "North America"), ("India", "New Delhi", "Hindi", "Asia"),
    ("Kenya", "Nairobi", "Swahili", "Africa"), ("Turkey", "Ankara", "Turkish", "Asia"),
    ("Poland", "Warsaw", "Polish", "Europe"), ("Sweden", "Stockholm", "Swedish", "Europe"),
    ("Norway", "Oslo", "Norwegian", "Europe"), ("Peru", "Lima", "Spanish", "South America"),
    ("Austria", "Vienna", "German", "Europe"), ("Ireland", "Dublin", "English", "Europe"),
    ("Netherlands", "Amsterdam", "Dutch", "Europe"), ("South Korea", "Seoul", "Korean", "Asia"),
    ("Thailand", "Bangkok", "Thai", "Asia"), ("Australia", "Canberra", "English", "Oceania"),
    ("Nigeria", "Abuja", "English", "Africa"), ("Cuba", "Havana", "Spanish", "North America"),
]
TRUTH_FRAMES = [
    ("capital", "The capital of {c} is {x}."),
    ("language", "The official language of {c} is {x}."),
    ("continent", "{c} is a country in {x}."),
    ("capital", "{x} is the capital city of {c}."),
]

POSITIVE = ["wonderful", "excellent", "delightful", "brilliant", "lovely", "fantastic", "superb", "charming",
            "enjoyable", "pleasant", "great", "beautiful", "amazing", "marvelous", "outstanding", "perfect",
            "splendid", "terrific", "fabulous", "impressive"]
NEGATIVE = ["terrible", "awful", "dreadful", "horrible", "boring", "disappointing", "miserable", "poor",
            "unpleasant", "annoying", "bad", "ugly", "disgusting", "mediocre", "painful", "useless",
            "tedious", "lousy", "pathetic", "frustrating"]
NOUNS = ["movie", "meal", "hotel", "book", "concert", "trip", "service", "game", "show", "restaurant"]
SENTIMENT_FRAMES = ["The {n} was {a}.", "I thought the {n} was {a}.", "Honestly, this {n} is {a}.",
                    "Everyone agreed that the {n} was {a}."]

# The same meanings in four languages (third person singular, so no agreement traps).
SUBJECTS = {
    "en": ["My brother", "The teacher", "Our neighbour", "The old man", "My sister", "The doctor",
           "The little girl", "Her father", "The farmer", "His mother"],
    "fr": ["Mon frère", "Le professeur", "Notre voisin", "Le vieil homme", "Ma sœur", "Le médecin",
           "La petite fille", "Son père", "Le fermier", "Sa mère"],
    "es": ["Mi hermano", "El profesor", "Nuestro vecino", "El anciano", "Mi hermana", "El médico",
           "La niña", "Su padre", "El granjero", "Su madre"],
    "de": ["Mein Bruder", "Der Lehrer", "Unser Nachbar", "Der alte Mann", "Meine Schwester", "Der Arzt",
           "Das kleine Mädchen", "Ihr Vater", "Der Bauer", "Seine Mutter"],
}
PREDICATES = {
    "en": ["is reading a book in the garden.", "drinks coffee every morning.", "works in a big city.",
           "likes to walk by the river.", "is cooking dinner for the family.", "writes a letter to a friend.",
           "buys bread at the market."],
    "fr": ["lit un livre dans le jardin.", "boit du café chaque matin.", "travaille dans une grande ville.",
           "aime se promener au bord de la rivière.", "prépare le dîner pour la famille.",
           "écrit une lettre à un ami.", "achète du pain au marché."],
    "es": ["lee un libro en el jardín.", "bebe café cada mañana.", "trabaja en una ciudad grande.",
           "le gusta pasear junto al río.", "prepara la cena para la familia.", "escribe una carta a un amigo.",
           "compra pan en el mercado."],
    "de": ["liest ein Buch im Garten.", "trinkt jeden Morgen Kaffee.", "arbeitet in einer großen Stadt.",
           "geht gern am Fluss spazieren.", "kocht das Abendessen für die Familie.",
           "schreibt einem Freund einen Brief.", "kauft Brot auf dem Markt."],
}
LANG_NAMES = {"en": "English", "fr": "French", "es": "Spanish", "de": "German"}

# Words that are nouns in one slot and verbs in another, so a probe cannot read the word
# type alone (the control task randomises labels per word type; Hewitt & Liang 2019).
AMBIGUOUS = ["watch", "run", "walk", "cook", "paint", "dance", "call", "fish", "play", "drink",
             "plant", "ride", "swim", "work", "smile", "dream", "jump", "kick", "talk", "cut"]
PEOPLE = ["the children", "my friends", "the students", "our parents", "the workers", "the tourists"]


def truth(rng: random.Random) -> list[dict]:
    out = []
    for relation, frame in TRUTH_FRAMES:
        col = {"capital": 1, "language": 2, "continent": 3}[relation]
        for row in COUNTRIES:
            country, true_obj = row[0], row[col]
            false_obj = rng.choice(sorted({r[col] for r in COUNTRIES} - {true_obj}))
            for obj, label in ((true_obj, "true"), (false_obj, "false")):
                out.append({"text": frame.format(c=country, x=obj), "label": label,
                            "group": f"country:{country}"})
    return out


def sentiment() -> list[dict]:
    out = []
    for adjs, label in ((POSITIVE, "positive"), (NEGATIVE, "negative")):
        for i, a in enumerate(adjs):
            for j, frame in enumerate(SENTIMENT_FRAMES):
                for n in NOUNS[(i + j) % 3::3]:  # a varied subset of nouns per (adjective, frame)
                    out.append({"text": frame.format(n=n, a=a), "label": label, "group": f"adjective:{a}"})
    return out


def language() -> list[dict]:
    out = []
    for i in range(len(SUBJECTS["en"])):
        for j in range(len(PREDICATES["en"])):
            for lang in LANG_NAMES:
                out.append({"text": f"{SUBJECTS[lang][i]} {PREDICATES[lang][j]}", "label": LANG_NAMES[lang],
                            "group": f"predicate:{j}"})
    return out


def pos() -> list[dict]:
    out = []
    for w in AMBIGUOUS:
        for k, who in enumerate(PEOPLE):
            # verb slot: "<people> <w> together every day."; noun slot: "<people> liked the <w> a lot."
            words_v = who.split() + [w, "together", "every", "day", "."]
            labels_v = [None] * len(who.split()) + ["verb", None, None, None, None]
            words_n = who.split() + ["liked", "the", w, "a", "lot", "."]
            labels_n = [None] * len(who.split()) + [None, None, "noun", None, None, None]
            out.append({"words": words_v, "labels": labels_v, "group": f"word:{w}"})
            out.append({"words": words_n, "labels": labels_n, "group": f"word:{w}"})
    return out


DESCRIPTIONS = {
    "truth": ("True and false statements about 30 countries' capitals (two phrasings), official languages and "
              "continents; "
              "each false one swaps in another country's object. Grouped by country."),
    "sentiment": ("Positive and negative sentences crossing 20 positive and 20 negative adjectives with "
                  "review nouns and four frames. Grouped by adjective, so held-out adjectives are unseen."),
    "language": ("The same 70 sentences (10 subjects x 7 predicates) in English, French, Spanish and German. "
                 "Grouped by predicate, so held-out sentences end in words the probe never saw."),
    "pos": ("Token level: 20 words that can be nouns or verbs ('watch', 'run', ...), each used as a verb "
            "('the children watch together every day') and as a noun ('the children liked the watch a lot'); "
            "only those words are labelled. Grouped by word."),
}


def main() -> None:
    rng = random.Random(0)
    sets = {"truth": truth(rng), "sentiment": sentiment(), "language": language(), "pos": pos()}
    for name, examples in sets.items():
        token_level = name == "pos"
        labels = sorted({l for e in examples for l in (e["labels"] if token_level else [e["label"]]) if l})
        doc = {"name": name, "description": DESCRIPTIONS[name], "task": "token" if token_level else "sequence",
               "position": "token" if token_level else "last", "labels": labels, "examples": examples}
        (OUT / f"probe_{name}.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        print(name, len(examples), labels)


if __name__ == "__main__":
    main()
