"""A synthetic but structured multi-label dataset: customer-support tickets and their topics.

Labels follow from the text (each label has its own phrasings), co-occur the way support topics do
(a refund usually involves billing, a login problem sometimes a security worry), two labels are rare,
some tickets carry no topic at all, some mention a topic only to deny it ("delivery was fine"), and
a few lose a secondary label (annotators miss things), so a perfect score is out of reach.
Deterministic for a given seed.
"""

from __future__ import annotations

import random
from typing import Any

# How often each label is a ticket's main topic.
PRIMARY = {
    "billing": 0.15,
    "shipping": 0.15,
    "account_access": 0.12,
    "bug": 0.13,
    "performance": 0.08,
    "feature_request": 0.09,
    "cancellation": 0.07,
    "refund": 0.06,
    "praise": 0.06,
    "security": 0.04,
    "data_privacy": 0.02,
    "accessibility": 0.015,
}
# P(second label | main label): the co-occurrence structure the model should pick up.
COOCCUR = {
    "refund": {"billing": 0.5, "shipping": 0.3},
    "cancellation": {"billing": 0.45, "refund": 0.3},
    "bug": {"performance": 0.25},
    "performance": {"bug": 0.3},
    "account_access": {"security": 0.25},
    "security": {"account_access": 0.4, "data_privacy": 0.2},
    "shipping": {"refund": 0.2},
    "billing": {"refund": 0.15},
    "praise": {"feature_request": 0.3},
    "accessibility": {"bug": 0.3, "feature_request": 0.3},
    "data_privacy": {"cancellation": 0.2, "security": 0.3},
    "feature_request": {"praise": 0.15},
}
PHRASES = {
    "billing": [
        "I was charged {amount} twice on my {card} this month.",
        "My invoice for {month} shows {amount} but my plan costs less.",
        "Why did my subscription price go up to {amount}?",
        "The payment for order {order} failed but the money left my account.",
        "Can you send me a corrected invoice with our company VAT number?",
        "There is an extra fee of {amount} on my bill that nobody explained.",
        "I need to update the card on file, the old one expired.",
    ],
    "refund": [
        "I would like my money back for order {order}.",
        "Please refund the {amount} you took by mistake.",
        "It has been {days} days and my refund still has not arrived.",
        "I returned the {product} last week, when will I get reimbursed?",
        "Your policy says refunds take 5 days, mine is at {days}.",
        "Can I get a partial refund since the {product} came damaged?",
    ],
    "shipping": [
        "My order {order} has not arrived after {days} days.",
        "The tracking number for my {product} shows no updates.",
        "The parcel was delivered to the wrong address.",
        "The courier left the {product} in the rain and the box is soaked.",
        "Do you ship to {country}? Checkout will not accept my address.",
        "The delivery date keeps moving, first {month} and now later.",
        "Only half of order {order} was in the box.",
    ],
    "account_access": [
        "I cannot log in to my account since {month}.",
        "The password reset email never arrives.",
        "My two-factor code is always rejected on {device}.",
        "The app says my username does not exist.",
        "I am locked out after too many sign-in attempts.",
        "I changed my phone and lost access to the authenticator.",
    ],
    "bug": [
        "The app crashes when I open the {feature} screen on {device}.",
        "Clicking save in {feature} does nothing at all.",
        "I get error {code} when I upload a file.",
        "The {feature} page shows a blank white screen in {browser}.",
        "Dates in the export are off by one day.",
        "Since the last update the {feature} button has disappeared.",
        "Notifications arrive twice and sometimes with the wrong name.",
    ],
    "performance": [
        "The dashboard takes {seconds} seconds to load.",
        "Everything is very slow in the afternoon.",
        "Search has become sluggish since the update.",
        "The {feature} page freezes for a long time before it responds.",
        "Sync is so slow that my team waits minutes for changes.",
        "The app drains my battery and lags on {device}.",
    ],
    "feature_request": [
        "It would be great if {feature} supported dark mode.",
        "Please add an option to export reports to Excel.",
        "Could you add a calendar view to {feature}?",
        "I wish I could share {feature} boards with guests.",
        "Please consider keyboard shortcuts for power users.",
        "An API for {feature} would save us hours every week.",
    ],
    "cancellation": [
        "Please cancel my subscription at the end of this month.",
        "How do I close my account for good?",
        "I want to stop the automatic renewal of my plan.",
        "We are moving to another provider, please end our contract.",
        "Downgrade me to the free plan and stop charging me.",
    ],
    "praise": [
        "Your support team was fantastic, thank you {name}!",
        "I love the new {feature} update, great job.",
        "Best app I have used for this, keep it up.",
        "Thanks for the quick help yesterday, it works perfectly now.",
        "The redesign of {feature} is beautiful and clear.",
    ],
    "security": [
        "I received a login alert from {country} that was not me.",
        "Someone changed my email address without my permission.",
        "I think my account was hacked, there are orders I never made.",
        "I got a phishing email that pretends to come from you.",
        "Unknown devices appear in my active sessions list.",
    ],
    "data_privacy": [
        "Please delete all personal data you hold about me under GDPR.",
        "I want a copy of every piece of data you store on me.",
        "Why does the app need access to my contacts?",
        "Do you sell my information to advertisers?",
    ],
    "accessibility": [
        "The screen reader cannot read the buttons in {feature}.",
        "The text contrast is too low for me to read with my eyesight.",
        "I cannot navigate the checkout with the keyboard only.",
        "Please add captions to the tutorial videos, I am deaf.",
    ],
}
# Topic words without the topic ("no problem with delivery"): the ambiguity real tickets have.
DISTRACTORS = {
    "billing": ["The payment itself went through fine.", "My invoice looks correct this time."],
    "refund": ["I do not want a refund, I just want it to work.", "No need to send money back."],
    "shipping": ["The parcel arrived on time, no problem there.", "Delivery was quick as usual."],
    "account_access": ["Logging in works fine.", "I can sign in without trouble."],
    "bug": ["Nothing is crashing, to be clear.", "There is no error message."],
    "performance": ["Speed is fine otherwise.", "The app is fast enough."],
    "cancellation": ["I am not planning to cancel.", "I want to keep my subscription."],
    "security": ["My password is safe, I checked.", "Nobody else uses my account."],
}
# Sentences that carry no topic of their own: they make texts longer and less regular.
FILLER = [
    "This is really frustrating.",
    "Please help me as soon as possible.",
    "I have contacted you twice already.",
    "Thanks in advance.",
    "My customer number is {order}.",
    "I use the {device} version.",
    "Hope you can sort this out.",
    "Regards, {name}.",
    "I have been a customer for {days} months.",
]
OPENERS = ["Hi,", "Hello team,", "Dear support,", "Hey,", "Good morning,", ""]
# Tickets with no topic: an empty label list is valid data.
NO_TOPIC = [
    "Hello, is anyone there?",
    "Just testing the contact form.",
    "Please call me back tomorrow.",
    "Quick question, are you open on weekends?",
    "Who can I talk to about a partnership?",
]
SLOTS: dict[str, list[str]] = {
    "amount": ["$9.99", "$19", "$49.50", "$120", "€15", "£30", "$7.25"],
    "card": ["Visa card", "Mastercard", "PayPal account", "debit card"],
    "month": ["January", "March", "May", "July", "September", "November"],
    "order": ["A1043", "B2290", "C7781", "#55012", "#90311", "Z-4410"],
    "days": ["3", "5", "10", "12", "14", "21", "30"],
    "product": ["headphones", "desk lamp", "blender", "backpack", "monitor", "keyboard"],
    "country": ["Canada", "Brazil", "Germany", "India", "Japan", "Kenya"],
    "device": ["iPhone", "Android", "iPad", "Windows laptop", "Mac", "Chromebook"],
    "feature": ["reports", "calendar", "projects", "invoices", "settings", "inbox"],
    "browser": ["Firefox", "Chrome", "Safari", "Edge"],
    "code": ["500", "403", "E-17", "0x80070005", "timeout"],
    "seconds": ["20", "30", "45", "60", "90"],
    "name": ["Anna", "Ravi", "Luis", "Mei", "Tom", "Fatima"],
}
LABELS = sorted(PHRASES)
# Unseen tickets the demo labels at the end.
NEW_TICKETS = [
    "I was billed twice for my plan, please give me my money back.",
    "The calendar page crashes on my iPhone and it is painfully slow.",
    "Someone from Brazil logged into my account and now I cannot sign in.",
    "Love the new reports page! Could you add an export to Excel?",
    "The screen reader skips every button in the settings screen.",
]


def _fill(template: str, rng: random.Random) -> str:
    out = template
    for slot, values in SLOTS.items():
        token = "{" + slot + "}"
        while token in out:
            out = out.replace(token, rng.choice(values), 1)
    return out


def make_ticket(rng: random.Random) -> dict[str, Any]:
    """One ticket: its text and labels."""
    if rng.random() < 0.03:
        return {"text": _fill(rng.choice(NO_TOPIC), rng), "labels": []}
    main = rng.choices(list(PRIMARY), weights=list(PRIMARY.values()))[0]
    labels = [main]
    for other, p in COOCCUR.get(main, {}).items():
        if rng.random() < p:
            labels.append(other)
    sentences = []
    for label in labels:
        k = 1 if rng.random() < 0.6 else 2
        sentences += [_fill(s, rng) for s in rng.sample(PHRASES[label], k)]
    sentences += [_fill(s, rng) for s in rng.sample(FILLER, rng.choice([0, 1, 1, 2]))]
    if rng.random() < 0.25:
        other = rng.choice([label for label in DISTRACTORS if label not in labels])
        sentences.append(rng.choice(DISTRACTORS[other]))
    rng.shuffle(sentences)
    opener = rng.choice(OPENERS)
    text = " ".join(([opener] if opener else []) + sentences)
    # Annotators sometimes tag only the main topic.
    if len(labels) > 1 and rng.random() < 0.05:
        labels = labels[:1]
    return {"text": text, "labels": sorted(labels)}


def make_dataset(n: int, seed: int = 13) -> dict[str, list[dict[str, Any]]]:
    """`n` tickets split 70 / 15 / 15 into train, dev and test, each with an `id`."""
    if n < 100:
        raise ValueError(f"a demo dataset needs at least 100 examples, got {n}")
    rng = random.Random(seed)
    rows = [{"id": f"t{i:05d}", **make_ticket(rng)} for i in range(n)]
    a, b = int(0.7 * n), int(0.85 * n)
    return {"train": rows[:a], "dev": rows[a:b], "test": rows[b:]}
