"""Write the shipped relation files (interp/data/relations/*.json) from the tables below.

We wrote every table here. Each relation has a template and candidate (subject, object)
pairs; the script keeps a subject only when the embedded model's top-1 next token after
the filled template is the first token of the object, as Hernandez et al. (2024) keep
only the facts their model knows. `python scripts/make_relation_data.py` rewrites the
files (tests/test_relations.py checks that every shipped subject is still known).

Subjects that a template shows as a demonstration are left out of its relation, so that
no kept answer can be copied from the prompt.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "interp" / "data" / "relations"

RELATIONS = {
    "country_capital": {
        "kind": "factual",
        "description": "A country and its capital city.",
        "template": "The capital city of {} is",
        "pairs": {
            "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
            "Japan": "Tokyo", "China": "Beijing", "Russia": "Moscow", "Egypt": "Cairo", "Greece": "Athens",
            "Austria": "Vienna", "Hungary": "Budapest", "Poland": "Warsaw", "Ireland": "Dublin", "Norway": "Oslo",
            "Sweden": "Stockholm", "Finland": "Helsinki", "Denmark": "Copenhagen", "Belgium": "Brussels",
            "Netherlands": "Amsterdam", "Cuba": "Havana", "Mexico": "Mexico City", "Peru": "Lima",
            "Chile": "Santiago", "Argentina": "Buenos Aires", "Colombia": "Bogota", "Venezuela": "Caracas",
            "Kenya": "Nairobi", "Thailand": "Bangkok", "Vietnam": "Hanoi", "Indonesia": "Jakarta",
            "Philippines": "Manila", "South Korea": "Seoul", "North Korea": "Pyongyang", "Iran": "Tehran",
            "Iraq": "Baghdad", "Syria": "Damascus", "Lebanon": "Beirut", "Turkey": "Ankara", "Ukraine": "Kyiv",
            "Romania": "Bucharest", "Bulgaria": "Sofia", "Serbia": "Belgrade", "Croatia": "Zagreb",
            "Czech Republic": "Prague", "Slovakia": "Bratislava", "Switzerland": "Bern", "Canada": "Ottawa",
            "Australia": "Canberra", "New Zealand": "Wellington", "India": "New Delhi", "Pakistan": "Islamabad",
            "Afghanistan": "Kabul", "Saudi Arabia": "Riyadh", "Jordan": "Amman", "Morocco": "Rabat",
            "Nigeria": "Abuja", "Ethiopia": "Addis Ababa", "Iceland": "Reykjavik", "Estonia": "Tallinn",
            "Latvia": "Riga", "Lithuania": "Vilnius", "Malaysia": "Kuala Lumpur", "England": "London",
            "Scotland": "Edinburgh", "Wales": "Cardiff", "Nepal": "Kathmandu", "Bangladesh": "Dhaka",
            "Sri Lanka": "Colombo", "Ghana": "Accra", "Senegal": "Dakar", "Tunisia": "Tunis", "Algeria": "Algiers",
            "Libya": "Tripoli", "Qatar": "Doha", "Uganda": "Kampala", "Zimbabwe": "Harare", "Jamaica": "Kingston",
            "Ecuador": "Quito", "Bolivia": "La Paz", "Uruguay": "Montevideo", "Mongolia": "Ulaanbaatar",
            "Cambodia": "Phnom Penh", "Taiwan": "Taipei",
        },
    },
    "country_language": {
        "kind": "factual",
        "description": "A country and its official language.",
        "template": "The official language of {} is",
        "pairs": {
            "France": "French", "Germany": "German", "Italy": "Italian", "Spain": "Spanish", "Portugal": "Portuguese",
            "Japan": "Japanese", "China": "Chinese", "Russia": "Russian", "Greece": "Greek", "Poland": "Polish",
            "Netherlands": "Dutch", "Sweden": "Swedish", "Norway": "Norwegian", "Finland": "Finnish",
            "Denmark": "Danish", "Hungary": "Hungarian", "Turkey": "Turkish", "Iran": "Persian", "Israel": "Hebrew",
            "Egypt": "Arabic", "Saudi Arabia": "Arabic", "Brazil": "Portuguese", "Mexico": "Spanish",
            "Argentina": "Spanish", "Chile": "Spanish", "Peru": "Spanish", "Colombia": "Spanish", "Cuba": "Spanish",
            "South Korea": "Korean", "North Korea": "Korean", "Vietnam": "Vietnamese", "Thailand": "Thai",
            "Indonesia": "Indonesian", "Ukraine": "Ukrainian", "Romania": "Romanian", "Bulgaria": "Bulgarian",
            "Serbia": "Serbian", "Croatia": "Croatian", "Czech Republic": "Czech", "Slovakia": "Slovak",
            "Austria": "German", "England": "English", "Australia": "English", "New Zealand": "English",
            "Ireland": "Irish", "Iceland": "Icelandic", "Estonia": "Estonian", "Latvia": "Latvian",
            "Lithuania": "Lithuanian", "Pakistan": "Urdu", "Bangladesh": "Bengali", "Nepal": "Nepali",
            "Iraq": "Arabic", "Syria": "Arabic", "Jordan": "Arabic", "Morocco": "Arabic", "Algeria": "Arabic",
            "Tunisia": "Arabic", "Libya": "Arabic", "Qatar": "Arabic", "Venezuela": "Spanish", "Ecuador": "Spanish",
            "Bolivia": "Spanish", "Uruguay": "Spanish", "Paraguay": "Spanish", "Mongolia": "Mongolian",
            "Cambodia": "Khmer", "Malaysia": "Malay", "Ethiopia": "Amharic", "Kenya": "Swahili",
            "Tanzania": "Swahili", "Afghanistan": "Pashto", "Georgia": "Georgian", "Armenia": "Armenian",
            "Albania": "Albanian", "Slovenia": "Slovenian", "Belarus": "Belarusian", "Laos": "Lao",
            "Myanmar": "Burmese", "Philippines": "Filipino", "Taiwan": "Mandarin", "Haiti": "French",
            "Senegal": "French",
        },
    },
    "landmark_city": {
        "kind": "factual",
        "description": "A landmark and the city it stands in.",
        "template": "{} is located in the city of",
        "pairs": {
            "The Eiffel Tower": "Paris", "The Louvre": "Paris", "Notre-Dame Cathedral": "Paris",
            "The Arc de Triomphe": "Paris", "The Colosseum": "Rome", "The Pantheon": "Rome",
            "The Trevi Fountain": "Rome", "The Vatican": "Rome", "The Statue of Liberty": "New York",
            "The Empire State Building": "New York", "Central Park": "New York", "Times Square": "New York",
            "The Brandenburg Gate": "Berlin", "The Reichstag": "Berlin", "Big Ben": "London",
            "The Tower of London": "London", "Buckingham Palace": "London", "Westminster Abbey": "London",
            "The British Museum": "London", "Tower Bridge": "London", "The Kremlin": "Moscow",
            "Red Square": "Moscow", "The Sydney Opera House": "Sydney", "The Golden Gate Bridge": "San Francisco",
            "The Acropolis": "Athens", "The Parthenon": "Athens", "The Sagrada Familia": "Barcelona",
            "Park Guell": "Barcelona", "The Prado Museum": "Madrid", "The Space Needle": "Seattle",
            "The Hollywood Sign": "Los Angeles", "The Gateway Arch": "St. Louis", "The Alamo": "San Antonio",
            "The White House": "Washington", "The Lincoln Memorial": "Washington",
            "The Capitol Building": "Washington", "The Forbidden City": "Beijing", "Tiananmen Square": "Beijing",
            "The Burj Khalifa": "Dubai", "The Little Mermaid statue": "Copenhagen", "The Leaning Tower": "Pisa",
            "The Rialto Bridge": "Venice", "St Mark's Basilica": "Venice", "The Duomo": "Florence",
            "The Uffizi Gallery": "Florence", "The Hagia Sophia": "Istanbul", "The Blue Mosque": "Istanbul",
            "The Rijksmuseum": "Amsterdam", "The Anne Frank House": "Amsterdam", "Charles Bridge": "Prague",
            "Prague Castle": "Prague", "The Atomium": "Brussels", "Christ the Redeemer": "Rio de Janeiro",
            "The CN Tower": "Toronto", "The Petronas Towers": "Kuala Lumpur", "The Taj Mahal": "Agra",
            "The Willis Tower": "Chicago", "Wrigley Field": "Chicago", "Fenway Park": "Boston",
            "The French Quarter": "New Orleans", "Schonbrunn Palace": "Vienna",
            "The Hermitage Museum": "Saint Petersburg", "Edinburgh Castle": "Edinburgh",
            "The Wailing Wall": "Jerusalem", "The Pyramids of Giza": "Cairo", "Marina Bay Sands": "Singapore",
            "Tokyo Tower": "Tokyo", "The Bund": "Shanghai", "Victoria Peak": "Hong Kong",
            "Alcatraz Island": "San Francisco", "The Las Vegas Strip": "Las Vegas",
            "The Metropolitan Museum of Art": "New York",
        },
    },
    "adjective_antonym": {
        "kind": "linguistic",
        "description": "An adjective and its opposite.",
        "template": "The opposite of {} is",
        "pairs": {
            "hot": "cold", "big": "small", "happy": "sad", "fast": "slow", "tall": "short", "old": "young",
            "light": "dark", "good": "bad", "rich": "poor", "strong": "weak", "hard": "soft", "high": "low",
            "early": "late", "wet": "dry", "clean": "dirty", "full": "empty", "thick": "thin", "heavy": "light",
            "loud": "quiet", "open": "closed", "true": "false", "right": "wrong", "long": "short",
            "wide": "narrow", "deep": "shallow", "cheap": "expensive", "easy": "difficult", "safe": "dangerous",
            "alive": "dead", "beautiful": "ugly", "brave": "cowardly", "near": "far", "sweet": "sour",
            "smooth": "rough", "tight": "loose", "sharp": "dull", "sick": "healthy", "polite": "rude",
            "new": "old", "black": "white", "first": "last", "inside": "outside", "up": "down",
            "positive": "negative", "major": "minor", "top": "bottom", "warm": "cool", "fat": "thin",
            "large": "small", "dark": "light", "noisy": "quiet", "public": "private", "ancient": "modern",
            "generous": "selfish", "simple": "complex", "visible": "invisible", "possible": "impossible",
            "legal": "illegal", "honest": "dishonest", "cold": "hot", "small": "big", "slow": "fast",
            "weak": "strong", "sad": "happy", "poor": "rich", "short": "long", "quiet": "loud", "dry": "wet",
            "empty": "full", "soft": "hard", "low": "high", "late": "early", "bad": "good", "young": "old",
            "dirty": "clean", "thin": "thick", "narrow": "wide", "difficult": "easy", "dead": "alive",
            "wrong": "right", "false": "true", "closed": "open", "dangerous": "safe", "ugly": "beautiful",
            "cool": "warm", "minor": "major",
        },
    },
    "adjective_comparative": {
        "kind": "linguistic",
        "description": "An adjective and its comparative form.",
        "template": "big -> bigger\nsmall -> smaller\nold -> older\nfast -> faster\nlong -> longer\n{} ->",
        "demonstrations": ["big", "small", "old", "fast", "long"],
        "pairs": {
            "tall": "taller", "short": "shorter", "slow": "slower", "young": "younger", "strong": "stronger",
            "weak": "weaker", "high": "higher", "low": "lower", "deep": "deeper", "wide": "wider",
            "cold": "colder", "warm": "warmer", "hot": "hotter", "cheap": "cheaper", "rich": "richer",
            "poor": "poorer", "dark": "darker", "light": "lighter", "bright": "brighter", "loud": "louder",
            "quiet": "quieter", "soft": "softer", "hard": "harder", "thick": "thicker", "thin": "thinner",
            "sweet": "sweeter", "smart": "smarter", "kind": "kinder", "clean": "cleaner", "safe": "safer",
            "great": "greater", "large": "larger", "happy": "happier", "easy": "easier", "early": "earlier",
            "heavy": "heavier", "busy": "busier", "funny": "funnier", "pretty": "prettier", "good": "better",
            "bad": "worse", "near": "nearer", "fine": "finer", "late": "later", "new": "newer",
            "close": "closer", "wise": "wiser", "brave": "braver", "calm": "calmer", "fresh": "fresher",
            "green": "greener", "tough": "tougher", "rough": "rougher", "sharp": "sharper",
            "smooth": "smoother", "tight": "tighter", "loose": "looser", "bold": "bolder", "cool": "cooler",
            "dry": "drier", "wet": "wetter", "fat": "fatter", "sad": "sadder", "mad": "madder", "nice": "nicer",
            "rare": "rarer", "pure": "purer", "wild": "wilder", "mild": "milder", "neat": "neater",
            "dense": "denser", "plain": "plainer", "proud": "prouder", "quick": "quicker",
        },
    },
    "verb_past": {
        "kind": "linguistic",
        "description": "A verb and its simple past tense.",
        "template": "Today I walk, yesterday I walked. Today I {}, yesterday I",
        "demonstrations": ["walk"],
        "pairs": {
            "eat": "ate", "go": "went", "see": "saw", "run": "ran", "swim": "swam", "write": "wrote",
            "read": "read", "sing": "sang", "drink": "drank", "speak": "spoke", "take": "took", "give": "gave",
            "make": "made", "buy": "bought", "think": "thought", "bring": "brought", "teach": "taught",
            "catch": "caught", "fly": "flew", "drive": "drove", "ride": "rode", "sleep": "slept", "feel": "felt",
            "keep": "kept", "leave": "left", "meet": "met", "sit": "sat", "stand": "stood", "win": "won",
            "lose": "lost", "find": "found", "tell": "told", "sell": "sold", "hear": "heard", "come": "came",
            "know": "knew", "grow": "grew", "throw": "threw", "draw": "drew", "fall": "fell", "begin": "began",
            "break": "broke", "choose": "chose", "forget": "forgot", "get": "got", "hold": "held",
            "build": "built", "send": "sent", "spend": "spent", "pay": "paid", "say": "said", "play": "played",
            "jump": "jumped", "cook": "cooked", "clean": "cleaned", "dance": "danced", "work": "worked",
            "talk": "talked", "help": "helped", "call": "called", "watch": "watched", "open": "opened",
            "close": "closed", "laugh": "laughed", "cry": "cried", "study": "studied", "visit": "visited",
            "wait": "waited", "paint": "painted", "climb": "climbed", "travel": "traveled",
            "listen": "listened", "learn": "learned", "live": "lived", "love": "loved", "move": "moved",
            "rest": "rested",
        },
    },
    "object_colour": {
        "kind": "commonsense",
        "description": "A thing and its usual colour.",
        "template": "Snow is white. Grass is green. Blood is red. The colour of {} is",
        "demonstrations": ["snow", "grass", "blood"],
        "pairs": {
            "banana": "yellow", "bananas": "yellow", "the sky": "blue", "coal": "black", "a tomato": "red",
            "tomatoes": "red", "an orange": "orange", "a lemon": "yellow", "lemons": "yellow", "milk": "white",
            "the sun": "yellow", "a strawberry": "red", "strawberries": "red", "a lime": "green",
            "limes": "green", "chocolate": "brown", "a cherry": "red", "cherries": "red", "a carrot": "orange",
            "carrots": "orange", "the ocean": "blue", "the sea": "blue", "a leaf": "green", "leaves": "green",
            "an eggplant": "purple", "a pumpkin": "orange", "pumpkins": "orange", "a crow": "black",
            "crows": "black", "a swan": "white", "swans": "white", "a flamingo": "pink", "flamingos": "pink",
            "a frog": "green", "frogs": "green", "ink": "black", "a fire truck": "red", "fire trucks": "red",
            "a polar bear": "white", "polar bears": "white", "a cucumber": "green", "cucumbers": "green",
            "coffee": "brown", "blueberries": "blue", "salt": "white", "sugar": "white", "soot": "black",
            "rust": "red", "a ruby": "red", "rubies": "red", "an emerald": "green", "emeralds": "green",
            "a sapphire": "blue", "sapphires": "blue", "gold": "yellow", "a raven": "black", "ravens": "black",
            "a canary": "yellow", "canaries": "yellow", "a lobster": "red", "lobsters": "red", "peas": "green",
            "plums": "purple", "grapes": "purple", "charcoal": "black", "chalk": "white", "cream": "white",
            "mud": "brown", "a cloud": "white", "clouds": "white", "an avocado": "green", "avocados": "green",
            "a pine tree": "green", "a school bus": "yellow", "school buses": "yellow", "a stop sign": "red",
            "a sunflower": "yellow", "daffodils": "yellow", "a rose": "red", "roses": "red", "violets": "purple",
            "broccoli": "green", "spinach": "green", "lettuce": "green", "celery": "green", "corn": "yellow",
            "egg yolks": "yellow", "olives": "green", "rice": "white", "cocoa": "brown", "cinnamon": "brown",
            "ketchup": "red", "mustard": "yellow", "wine": "red", "teeth": "white", "bones": "white",
            "paper": "white", "ashes": "grey", "smoke": "grey", "steel": "grey", "copper": "orange",
            "ivory": "white", "jade": "green", "pearls": "white", "tar": "black", "oil": "black",
            "night": "black", "wood": "brown", "a walnut": "brown", "the moon": "white", "lava": "red",
            "butter": "yellow", "an elephant": "grey", "elephants": "grey", "a pig": "pink", "pigs": "pink",
        },
    },
    "animal_sound": {
        "kind": "commonsense",
        "description": "An animal (plural) and the sound it makes, as a verb.",
        "template": "Dogs bark, cats meow, lions roar, ducks quack, and {}",
        "demonstrations": ["dogs", "cats", "lions", "ducks"],
        "pairs": {
            "cows": "moo", "pigs": "oink", "horses": "neigh", "sheep": "bleat", "owls": "hoot", "snakes": "hiss",
            "bees": "buzz", "wolves": "howl", "frogs": "croak", "birds": "sing", "mice": "squeak",
            "donkeys": "bray", "roosters": "crow", "hens": "cluck", "goats": "bleat", "crows": "caw",
            "turkeys": "gobble", "doves": "coo", "pigeons": "coo", "bears": "growl", "hyenas": "laugh",
            "crickets": "chirp", "monkeys": "chatter", "geese": "honk", "flies": "buzz", "mosquitoes": "buzz",
            "puppies": "yelp", "kittens": "mew", "lambs": "bleat", "seals": "bark", "dolphins": "click",
            "coyotes": "howl", "rattlesnakes": "rattle", "bulls": "bellow", "parrots": "squawk",
            "elephants": "trumpet", "tigers": "roar", "leopards": "growl", "gulls": "squawk", "camels": "grunt",
            "hippos": "grunt", "rats": "squeak", "hamsters": "squeak", "toads": "croak", "chicks": "cheep",
            "ducklings": "peep", "jaguars": "roar", "foxes": "bark", "chickens": "cluck", "wasps": "buzz",
            "songbirds": "sing", "canaries": "sing", "hornets": "buzz", "magpies": "chatter",
            "squirrels": "chatter", "gorillas": "grunt", "swans": "hiss", "cicadas": "buzz", "larks": "sing",
            "bumblebees": "buzz", "gnats": "buzz", "panthers": "roar", "cougars": "roar", "robins": "sing",
            "sparrows": "chirp", "finches": "chirp", "nightingales": "sing", "blackbirds": "sing",
            "thrushes": "sing", "wrens": "sing", "warblers": "sing", "guinea pigs": "squeak", "gerbils": "squeak",
            "sea lions": "bark", "hounds": "bark", "terriers": "bark", "jackals": "howl", "wolf packs": "howl",
            "bullfrogs": "croak", "tree frogs": "croak", "grasshoppers": "chirp", "chipmunks": "chirp",
            "bats": "squeak", "piglets": "squeal", "whales": "sing", "cattle": "low", "calves": "bleat",
            "grizzly bears": "growl", "geckos": "chirp", "hummingbirds": "hum", "cobras": "hiss",
        },
    },
}


def main() -> None:
    import torch

    from interp import load_model
    from interp.knowledge.relations import first_token, model_top1

    model = load_model()
    OUT.mkdir(parents=True, exist_ok=True)
    for name, spec in RELATIONS.items():
        demos = set(spec.get("demonstrations", []))
        pairs = [(s, " " + o) for s, o in spec["pairs"].items() if s not in demos]
        prompts = [spec["template"].replace("{}", s, 1) for s, _ in pairs]
        with torch.no_grad():
            top = model_top1(model, prompts)
        kept = [{"subject": s, "object": o} for (s, o), t in zip(pairs, top) if t == first_token(model, o)]
        data = {
            "relation": name,
            "kind": spec["kind"],
            "description": spec["description"],
            "template": spec["template"],
            "known_by": f"{model.cfg.model_name}: each object's first token is the top-1 next token after the "
                        "template filled with the subject",
            "samples": kept,
        }
        (OUT / f"{name}.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        print(f"{name}: kept {len(kept)} of {len(pairs)}")


if __name__ == "__main__":
    main()
