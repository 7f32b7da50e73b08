"""The built-in offline task: extract order details from customer messages into JSON.

No dataset hub is reachable here, so the harness generates its default task. It is built to be hard
enough for a 135M instruct model that the methods separate: phrasing, sentence order and noise vary;
dates, amounts and weights must be normalised; some fields are often absent (null); and a share of the
test messages use sentence templates never seen in training (flagged ``unseen_phrasing``).

Everything is deterministic from a seed. The three splits never share a message or an order id.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

FIELDS: tuple[str, ...] = (
    "name",
    "order_id",
    "product",
    "quantity",
    "amount",
    "currency",
    "date",
    "weight_kg",
    "issue",
)

INSTRUCTION = (
    "Extract the order as JSON with keys "
    + ", ".join(FIELDS)
    + ". Use null if absent, dates as YYYY-MM-DD, weight in kg, "
    "issue one of refund, damaged, late_delivery, wrong_item, cancel, billing."
)

FIRST_NAMES = (
    "Anna Ben Carla Dmitri Elena Farid Grace Hiro Ines Jonas Kemi Luis Maya Nils Olga Priya Quentin Rosa "
    "Sami Tara Umar Vera Wei Ximena Yusuf Zoe Amir Bea Chidi Dana Emil Fatima Goran Hana Ivan Julia"
).split()
LAST_NAMES = (
    "Novak Okafor Schmidt Tanaka Garcia Haddad Kowalski Lindqvist Moreau Patel Rossi Silva Weber Yilmaz "
    "Andersen Brennan Costa Dubois Eriksen Fischer Gupta Horvat Ito Jensen Kim Larsen Mendes Nakamura"
).split()

# Canonical product name -> ways customers write it (singular, plural).
PRODUCTS: dict[str, tuple[str, str]] = {
    "desk lamp": ("desk lamp", "desk lamps"),
    "office chair": ("office chair", "office chairs"),
    "coffee grinder": ("coffee grinder", "coffee grinders"),
    "yoga mat": ("yoga mat", "yoga mats"),
    "bluetooth speaker": ("bluetooth speaker", "bluetooth speakers"),
    "water bottle": ("water bottle", "water bottles"),
    "hiking boots": ("pair of hiking boots", "pairs of hiking boots"),
    "phone case": ("phone case", "phone cases"),
    "kettle": ("kettle", "kettles"),
    "backpack": ("backpack", "backpacks"),
    "monitor stand": ("monitor stand", "monitor stands"),
    "wool blanket": ("wool blanket", "wool blankets"),
    "chef knife": ("chef knife", "chef knives"),
    "air purifier": ("air purifier", "air purifiers"),
    "keyboard": ("keyboard", "keyboards"),
    "rain jacket": ("rain jacket", "rain jackets"),
}

NUMBER_WORDS = "zero one two three four five six seven eight nine ten eleven twelve".split()

CURRENCIES: dict[str, tuple[str, ...]] = {
    # code -> formats; {v} is the amount with two decimals, {c} with thousands separators
    "USD": ("${c}", "{v} USD", "USD {v}", "{v} dollars", "${v}"),
    "EUR": ("€{c}", "{v} EUR", "EUR {v}", "{v} euros"),
    "GBP": ("£{c}", "{v} GBP", "{v} pounds"),
}

MONTHS = "January February March April May June July August September October November December".split()

# Sentence templates per slot. The last entries of each list are held out of training and validation:
# they appear only in test messages (HELD_OUT of each list).
ISSUE_SENTENCES: dict[str, list[str]] = {
    "refund": [
        "I would like a refund for the {qty} {prod} I bought.",
        "Please refund me for {qty} {prod}.",
        "I want my money back for the {qty} {prod}.",
        "Can I get a refund on {qty} {prod}?",
        "Requesting reimbursement for {qty} {prod}, they are not what I hoped.",
    ],
    "damaged": [
        "The {qty} {prod} arrived broken.",
        "I received {qty} {prod} and they were damaged in the box.",
        "My {qty} {prod} showed up cracked.",
        "{qty} {prod} came smashed, the packaging was torn.",
        "Opened the parcel and the {qty} {prod} were in pieces.",
    ],
    "late_delivery": [
        "My {qty} {prod} still have not arrived.",
        "I am still waiting for {qty} {prod}, delivery is late.",
        "Where are my {qty} {prod}? The delivery is overdue.",
        "The {qty} {prod} were supposed to be here days ago.",
        "Tracking has not moved for the {qty} {prod} in a week.",
    ],
    "wrong_item": [
        "I ordered {qty} {prod} but got something else.",
        "You sent me the wrong thing instead of {qty} {prod}.",
        "Instead of {qty} {prod} the box contained a different item.",
        "The package was supposed to hold {qty} {prod}, it did not.",
        "Somebody mixed up my order: no sign of the {qty} {prod}.",
    ],
    "cancel": [
        "Please cancel my order of {qty} {prod}.",
        "I need to cancel the {qty} {prod} I ordered.",
        "Cancel the {qty} {prod}, I changed my mind.",
        "I no longer want the {qty} {prod}, please stop the order.",
        "Kindly call off the purchase of {qty} {prod}.",
    ],
    "billing": [
        "I was charged twice for {qty} {prod}.",
        "The invoice for {qty} {prod} is wrong.",
        "My card was billed incorrectly for {qty} {prod}.",
        "There is an extra charge on my statement for {qty} {prod}.",
        "The price I paid for {qty} {prod} does not match the receipt.",
    ],
}
ORDER_SENTENCES = [
    "The order number is {oid}.",
    "Order {oid}.",
    "My order id: {oid}.",
    "Reference {oid}.",
    "It was order #{oid}.",
    "You can find it under {oid} in your system.",
]
DATE_SENTENCES = [
    "I placed it on {d}.",
    "Ordered {d}.",
    "The purchase was made on {d}.",
    "Bought on {d}.",
    "This goes back to {d}.",
]
AMOUNT_SENTENCES = [
    "I paid {a} in total.",
    "The total was {a}.",
    "It cost me {a}.",
    "Charged {a}.",
    "Altogether that came to {a}.",
]
WEIGHT_SENTENCES = [
    "The parcel weighed {w}.",
    "Shipping weight was {w}.",
    "The box is {w}.",
    "It tipped the scales at {w}.",
]
NAME_OPENERS = ["Hi, this is {n}.", "Hello, my name is {n}.", "{n} here.", "Good morning, {n} writing."]
NAME_CLOSERS = ["Thanks, {n}", "Regards, {n}", "- {n}", "Cheers, {n}", "Sincerely, {n}"]
GREETINGS = ["Hi,", "Hello,", "Hey there.", "Dear support,", "Good afternoon."]
FILLERS = [
    "This is really frustrating.",
    "Hope you can help.",
    "Please get back to me soon.",
    "I have been a customer for years.",
    "Not happy about this.",
    "Thank you in advance.",
]
HELD_OUT = 1  # the last template of each list is test-only
UNSEEN_SHARE = 0.5  # share of test examples allowed to draw test-only templates


@dataclass(frozen=True)
class Example:
    """One task example: the message, its gold JSON fields, and whether test-only phrasing was used."""

    message: str
    fields: dict
    unseen_phrasing: bool

    def completion(self) -> str:
        """The gold answer: the fields as one line of JSON in the fixed key order."""
        return json.dumps({k: self.fields[k] for k in FIELDS}, ensure_ascii=False, separators=(",", ":"))


def _pick(rng: random.Random, options: list[str], held_out: bool) -> tuple[str, bool]:
    """Pick a template; seen templates only unless held_out, where test-only ones are also allowed."""
    pool = options if held_out else options[:-HELD_OUT]
    choice = rng.choice(pool)
    return choice, choice in options[-HELD_OUT:]


def _format_date(rng: random.Random, d: date) -> str:
    day = d.day
    suffix = "th" if 11 <= day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    month = MONTHS[d.month - 1]
    styles = [
        f"{month} {day}, {d.year}",
        f"{day} {month[:3]} {d.year}",
        f"{month} {day}{suffix} {d.year}",
        f"{d.isoformat()}",
        f"{day}.{d.month}.{d.year}",
        f"the {day}{suffix} of {month} {d.year}",
    ]
    return rng.choice(styles)


def _format_amount(rng: random.Random, value: float, currency: str) -> str:
    fmt = rng.choice(CURRENCIES[currency])
    v = f"{value:.2f}"
    if rng.random() < 0.3 and value == int(value):
        v = str(int(value))
    return fmt.format(v=v, c=f"{value:,.2f}")


def _format_weight(rng: random.Random, kg: float) -> str:
    if rng.random() < 0.5:
        return f"{int(round(kg * 1000))} g" if rng.random() < 0.5 else f"{int(round(kg * 1000))} grams"
    return rng.choice([f"{kg:g} kg", f"{kg:g} kilograms", f"{kg:g}kg"])


def _format_quantity(rng: random.Random, qty: int) -> str:
    if qty <= 12 and rng.random() < 0.5:
        return NUMBER_WORDS[qty]
    return str(qty)


def _add_noise(rng: random.Random, text: str) -> str:
    """Customer-style noise that leaves every field value readable."""
    if rng.random() < 0.2:
        text = text.lower()
    if rng.random() < 0.15:
        text = text.replace(". ", " ").rstrip(".")
    if rng.random() < 0.1:
        text = text.replace(",", "")
    return text


# Long on purpose: one example's fields drawn in turn from one random stream (the order fixes the task).
def make_example(rng: random.Random, *, order_number: int, allow_unseen: bool) -> Example:
    """Generate one example; order_number makes the order id unique across the whole dataset."""
    unseen = False

    def pick(options: list[str]) -> str:
        nonlocal unseen
        t, held = _pick(rng, options, allow_unseen)
        unseen = unseen or held
        return t

    name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}" if rng.random() < 0.7 else None
    prefix = rng.choice("ABCDKMPRTX")
    oid = f"{prefix}-{order_number:05d}"
    oid_written = rng.choice([oid, oid.replace("-", ""), oid.lower(), oid.replace("-", " ")])
    product = rng.choice(list(PRODUCTS))
    qty = rng.choices([1, 2, 3, 4, 5, 6, 10, 12, 20], weights=[30, 20, 12, 8, 6, 5, 4, 3, 2])[0]
    issue = rng.choice(list(ISSUE_SENTENCES))
    singular, plural = PRODUCTS[product]
    prod_written = singular if qty == 1 else plural
    qty_written = _format_quantity(rng, qty)
    if qty == 1 and rng.random() < 0.5:
        qty_written = rng.choice(["a", "one"]) if singular[0] not in "aeiou" else "one"

    has_amount = rng.random() < 0.75
    currency = rng.choice(list(CURRENCIES)) if has_amount else None
    amount = float(round(rng.uniform(5, 1500), rng.choice([0, 2]))) if has_amount else None
    has_date = rng.random() < 0.7
    day = date(2023, 1, 1) + timedelta(days=rng.randrange(0, 730)) if has_date else None
    has_weight = rng.random() < 0.35
    weight = rng.choice([0.25, 0.5, 0.75, 1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.5, 7.0, 12.0]) if has_weight else None

    issue_sentence = pick(ISSUE_SENTENCES[issue]).format(qty=qty_written, prod=prod_written)
    body = [issue_sentence, pick(ORDER_SENTENCES).format(oid=oid_written)]
    if has_date:
        body.append(pick(DATE_SENTENCES).format(d=_format_date(rng, day)))
    if has_amount:
        body.append(pick(AMOUNT_SENTENCES).format(a=_format_amount(rng, amount, currency)))
    if has_weight:
        body.append(pick(WEIGHT_SENTENCES).format(w=_format_weight(rng, weight)))
    if rng.random() < 0.4:
        body.append(rng.choice(FILLERS))
    rng.shuffle(body)
    parts: list[str] = []
    if name and rng.random() < 0.5:
        parts.append(pick(NAME_OPENERS).format(n=name))
        parts.extend(body)
    else:
        if rng.random() < 0.6:
            parts.append(rng.choice(GREETINGS))
        parts.extend(body)
        if name:
            parts.append(pick(NAME_CLOSERS).format(n=name))
    message = _add_noise(rng, " ".join(parts))

    fields = {
        "name": name,
        "order_id": oid,
        "product": product,
        "quantity": qty,
        "amount": amount,
        "currency": currency,
        "date": day.isoformat() if day else None,
        "weight_kg": weight,
        "issue": issue,
    }
    return Example(message=message, fields=fields, unseen_phrasing=unseen)


def generate_splits(*, seed: int, n_train: int, n_validation: int, n_test: int) -> dict[str, list[Example]]:
    """Three disjoint splits. Test examples may use held-out templates; train and validation never do."""
    rng = random.Random(seed)
    seen_messages: set[str] = set()
    splits: dict[str, list[Example]] = {}
    order_number = 0
    for split, n in (("train", n_train), ("validation", n_validation), ("test", n_test)):
        out: list[Example] = []
        while len(out) < n:
            order_number += 1
            allow_unseen = split == "test" and rng.random() < UNSEEN_SHARE
            ex = make_example(rng, order_number=order_number, allow_unseen=allow_unseen)
            if ex.message in seen_messages:
                continue
            seen_messages.add(ex.message)
            out.append(ex)
        splits[split] = out
    return splits


def prompt_for(message: str) -> str:
    """The user-turn text for one message (the chat template is applied later, per model)."""
    return f"{INSTRUCTION}\n\nMessage: {message}"


def write_jsonl(splits: dict[str, list[Example]], out_dir: Path) -> dict[str, Path]:
    """Write each split as prompt/completion JSONL (the documents' format); atomic per file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for split, examples in splits.items():
        path = out_dir / f"{split}.jsonl"
        tmp = path.with_suffix(".jsonl.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for ex in examples:
                row = {
                    "prompt": prompt_for(ex.message),
                    "completion": ex.completion(),
                    "unseen_phrasing": ex.unseen_phrasing,
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        tmp.replace(path)
        paths[split] = path
    return paths
