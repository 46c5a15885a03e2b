"""A paraphrase grammar of user turns, labelled with their acts and spans, to train the text NLU.

The simulated users' own text (``user_nlg``) has one template per act and register: an NLU trained on
it learns the templates. This grammar says the same meanings the many ways people do: every value
by its synonyms and paraphrases (from the domain file), "don't care" in many forms, booking details
in free form ("table for 2 tonight 19:30", "4 ppl sat 8ish"), several intents in one turn, yes/no
with content, closings, typos and abbreviations, fillers and hedges, and out-of-domain chit-chat
that must read as "not understood". Each example carries the system prompt it answers (the NLU's
context), the act types it holds and the character span and type of every slot mention, which is
what the tagger learns.

Nothing here is evaluated on: the NLU is judged on the hand-written set under ``bench/data``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from dialogue.domain import WEEKDAYS, Domain
from dialogue.nlu.labels import LabelledTurn, Span, context_of

CONTEXTS = ("greet", "request", "request_all", "suggest", "confirm", "explain", "offer", "no_match", "inform",
            "ask_booking", "book", "reqmore")  # fmt: skip

# -- phrases ---------------------------------------------------------------------------------
_GREETINGS = ("hi", "hello", "hey", "hiya", "hi there", "hello there", "good morning", "good afternoon",
              "good evening", "morning", "evening", "hey there", "greetings", "howdy", "yo")  # fmt: skip
_FILLERS = ("um", "uh", "hmm", "well", "so", "ok so", "right", "erm", "oh", "actually", "basically", "like")
_HEDGES = ("if that's okay", "if possible", "if you can", "I think", "ideally", "please", "if that makes sense",
           "would be lovely", "that would be great", "no rush", "thanks", "thank you")  # fmt: skip
_WANT = {
    0: ("", "", "need", "want", "looking for", "find"),
    1: ("I'm looking for", "I want", "I need", "I'd like", "Can you find me", "Do you have", "I'm after",
        "Could I get", "Find me", "I would like", "Is there", "Looking for", "We want", "We're looking for"),
    2: ("I was wondering if you could help me find", "I'd really love to find", "we're hoping to find",
        "I'm trying to find", "could you possibly find me", "I'd be so grateful for", "my friends and I want",
        "I've been looking everywhere for", "I fancy", "we're in the mood for"),
}  # fmt: skip
_AFFIRM = {0: ("yes", "y", "yep", "yeah", "ya", "yup", "ok", "sure", "correct", "right", "yes pls", "gr8", "great",
               "perfect", "lovely", "sounds good", "that'll do", "fine by me", "go on then"),
           1: ("Yes", "Yes, that's right", "That's correct", "Yeah", "Right", "Exactly", "Yes please",
               "That's it", "Sounds good", "Perfect", "Great", "That works", "That'll do fine", "Lovely",
               "That one sounds good", "Sounds perfect", "Brilliant", "Yes, that one", "That'll work"),
           2: ("yes, that's exactly it", "oh yes, that sounds lovely", "yeah that's perfect, thank you",
               "yes yes, spot on", "mm yes I think that's right", "that would be wonderful actually",
               "oh brilliant, yes")}  # fmt: skip
_NEGATE = {0: ("no", "nope", "nah", "n", "wrong", "not that"),
           1: ("No", "No, that's wrong", "That's not right", "Not quite", "No thanks", "Actually no",
               "That's not what I said", "No, I don't want that"),
           2: ("oh no, sorry, that's not what I meant", "hmm no, not really", "no no, I think you misheard me",
               "ah, not quite I'm afraid", "sorry, no, that's not it")}  # fmt: skip
_ACK = {0: ("ok", "k", "okay", "fine", "cool", "alright", "got it", "sure", "kk"),
        1: ("Okay", "Alright", "Fine", "Got it", "OK then", "Sure", "Understood", "Makes sense"),
        2: ("okay, sounds nice I guess", "alright then, that's fine", "oh okay, got it, thanks",
            "right, okay, I see", "okay, that sounds nice", "oh that sounds good I guess", "okay cool, that works")}  # fmt: skip
_DONT_KNOW = {0: ("not sure", "dunno", "no idea", "idk", "options?", "what options", "?"),
              1: ("I don't know", "I'm not sure", "What are the options?", "What do you have?", "No idea",
                  "You tell me", "What can I choose from?", "Not sure, what is there?"),
              2: ("hmm, I'm not really sure, what are the options?", "gosh, I don't really know, what would you suggest?",
                  "I have no idea honestly, what do you have?", "oh I haven't thought about that, what's available?")}  # fmt: skip
_CONFUSED = {0: ("what?", "huh", "huh?", "??", "wat", "eh?", "what"),
             1: ("Sorry, I didn't get that", "What do you mean?", "I don't understand", "Sorry?", "Come again?",
                 "Can you say that again?", "I'm confused"),
             2: ("sorry, that's a lot at once, I'm a bit confused", "oh dear, I'm not sure what you're asking me",
                 "sorry, I don't quite follow", "hang on, what do you mean by that?")}  # fmt: skip
_BYE = {0: ("bye", "thx bye", "thanks bye", "cheers", "ta", "thats all", "done", "no thats it", "thx", "nope thats all"),
        1: ("That's all, thanks", "Thank you, goodbye", "No, that's everything", "That's all I need",
            "Nothing else, thanks", "Great, thanks, bye", "No thanks, that's it", "All good, thank you",
            "Perfect, thanks for your help", "That will be all"),
        2: ("thank you so much, that's really helpful, bye!", "no that's everything, cheers, have a good day",
            "lovely, that's all I needed, thanks a lot", "brilliant, you've been really helpful, bye for now",
            "nope, all sorted, thank you so much")}  # fmt: skip
_HANGUP = {0: ("forget it", "useless", "never mind", "nvm", "waste of time", "im done with this", "give up"),
           1: ("This is taking too long. Bye.", "Forget it", "Never mind, I'll go elsewhere", "This is useless",
               "I give up", "Forget about it, I'll sort it myself", "I'll just use an app instead",
               "Not worth it, bye"),
           2: ("ugh, never mind, I give up", "honestly this isn't working, I'll try somewhere else",
               "forget it, this is far too complicated",
               "honestly I give up, nothing's working, I'll look elsewhere")}  # fmt: skip
_BOOK = {0: ("book it", "book", "book pls", "reserve it", "book that", "book table", "go ahead"),
         1: ("Book it", "Can you book it?", "Please book it", "I'd like to book", "Could you make a reservation?",
             "Reserve a table please", "Go ahead and book it", "Let's book it", "Can I book?", "Make a booking"),
         2: ("could you book it for me?", "ooh, can I book a table there?", "I'd love to make a reservation please",
             "would you be able to book that for us?", "let's go ahead and reserve it if that's okay")}  # fmt: skip
_ROOM_BOOK = ("book a room", "reserve a room", "book rooms", "book it", "make a reservation", "book a stay")
_TABLE_BOOK = ("book a table", "reserve a table", "get a table", "book it", "make a reservation", "book a spot")

_REQUEST_WORDS = {
    "phone": (
        "phone",
        "phone number",
        "number",
        "telephone",
        "contact number",
        "tel",
        "phone no",
        "digits",
        "num",
        "tel no",
        "ph",
        "phone #",
        "mobile number",
    ),
    "address": ("address", "location", "street address", "exact address", "addr", "full address"),
    "postcode": ("postcode", "post code", "postal code", "zip", "zip code", "postcode please"),
    "parking": ("parking", "car park", "parking space", "parking facilities"),
}
_REQUEST_QUESTIONS = {
    "address": ("where is it", "where's it located", "how do I get there", "where exactly is that",
                "where is that place", "how do I find it", "whereabouts is it", "where do I go",
                "what street is it on"),
    "parking": ("can I park there", "is there parking", "do they have parking", "can we park",
                "is parking available", "is there somewhere to park", "somewhere to leave the car",
                "can I bring the car", "is there a car park"),
    "phone": ("how can I call them", "how do I contact them", "what number do I ring", "how do I ring them"),
    "postcode": ("what's the postcode for the satnav", "postcode for the sat nav"),
}  # fmt: skip
_REQUEST_FRAMES = {
    0: ("{x}?", "{x} pls", "{x}", "and {x}?", "whats the {x}", "{x} please"),
    1: ("What is the {x}?", "What's the {x}?", "Can I have the {x}?", "Could you give me the {x}?",
        "Can you tell me the {x}?", "I need the {x}.", "And the {x}?", "What's their {x}?", "Send me the {x}."),
    2: ("oh and could you maybe tell me the {x} please?", "would you mind giving me their {x}?",
        "that's great, and what would the {x} be?", "lovely, could I possibly get the {x} too?"),
}  # fmt: skip

_DONTCARE_FRAMES = {
    0: ("any {n}", "{n} any", "{n} doesnt matter", "dont care {n}", "any {n} fine", "whatever {n}"),
    1: ("Any {n} is fine.", "I don't mind the {n}.", "The {n} doesn't matter.", "I don't care about the {n}.",
        "Any {n} will do.", "I'm not fussed about the {n}.", "{n} isn't important.", "No preference on {n}."),
    2: ("oh, I really don't mind about the {n}, anything is fine", "honestly the {n} doesn't matter to me at all",
        "I'm not too fussed about the {n} to be honest", "any {n} would be fine really"),
}  # fmt: skip
_DONTCARE_SLOTLESS = {
    "area": ("anywhere", "anywhere is fine", "wherever", "wherever is fine really", "any part of town",
             "it doesn't matter where", "I don't mind where", "location doesn't matter", "anywhere in town"),
    "pricerange": ("price doesn't matter", "price is no object", "any price", "whatever it costs",
                   "money is no object", "I don't mind what it costs", "any budget",
                   "money's not an issue", "cost isn't an issue", "budget's not a problem"),
    "food": ("any food", "any cuisine", "I'll eat anything", "not fussed about the food", "any type of food",
             "whatever food"),
    "stars": ("any star rating", "stars don't matter", "any number of stars", "I don't mind how many stars"),
    "type": ("hotel or guesthouse, either", "either is fine", "any type", "hotel or guest house, don't mind",
             "either type"),
}  # fmt: skip
_DONTCARE_GENERIC = ("don't mind", "dont care", "doesn't matter", "any", "anything", "whatever", "no preference",
                     "either", "any is fine", "I don't mind", "surprise me", "not bothered", "up to you",
                     "doesn't matter to me", "any will do", "not fussed")  # fmt: skip

_SLOT_FRAMES = {
    "area": ("{v}", "in the {v}", "{v} area", "around the {v}", "near the {v}", "in {v}", "somewhere {v}",
             "in the {v} part of town", "{v} of town"),
    "food": ("{v}", "{v} food", "a {v} place", "{v} restaurant", "some {v}", "a {v} restaurant", "serving {v}",
             "{v} cuisine", "for {v}"),
    "pricerange": ("{v}", "something {v}", "{v} prices", "in the {v} price range", "a {v} place", "{v} one",
                   "{v} price range"),
    "stars": ("{v} star", "{v} stars", "{v}-star", "rated {v} stars", "with {v} stars", "a {v} star place"),
    "type": ("a {v}", "{v}", "some {v}"),
}  # fmt: skip
_STAR_WORDS = {"2": ("2", "two"), "3": ("3", "three"), "4": ("4", "four"), "5": ("5", "five")}

_OOD = (
    "what's the weather like", "tell me a joke", "are you a robot", "are you a real person", "lol", "haha",
    "my cat is sick", "what time is it", "who won the match last night", "can you order me a taxi",
    "I like turtles", "what's the meaning of life", "do you know any good films", "asdfgh", "ok google",
    "how old are you", "my phone battery is dying", "can you help me with my homework", "play some music",
    "what's 2 plus 2", "I hate mondays", "is it going to rain", "where can I buy shoes", "sing me a song",
    "what's your name", "how are you today", "I'm bored", "the train was late again", "test test",
    "blah blah", "can you call my mum", "what's the capital of france", "I need a plumber", "hmm interesting",
    "do you dream", "what's the news today", "I'm learning to cook", "my flight got cancelled",
    "can I pay with bitcoin", "how do I reset my password", "send me an email", "where's the nearest atm",
    "who made you", "that's funny", "what do you think about football", "🙂", "...", "qwerty",
    "I want to speak to a human", "can you book me a flight", "set an alarm for 7", "remind me to buy milk",
    "do you like pizza more than pasta", "my dog ate my homework", "what's trending", "translate this to french",
    "how far is the moon", "I just got a new job", "is this thing on", "k thx", "brb",
)  # fmt: skip

# Chit-chat that says booking-ish words (a day, a time, "phone", "hotel") and still asks for nothing.
_OOD_FRAMES = (
    "what's the weather like {when}", "is it going to rain {when}", "is the football on {when}",
    "what's on telly {when}", "I've got work {when}, ugh", "are there any good films out {when}",
    "can you book me a {transport} {when}", "what time does the {transport} leave {when}",
    "sorry, my phone is about to die", "hang on, my phone is ringing", "sorry, someone's at the door",
    "my {relative} used to work in a {place}", "my {relative} grabbed the phone, ignore that",
    "do you know the address of the {other}", "what's the number for a {service}",
    "I'm meeting my {relative} {when}, they're always late", "where's the nearest {other}",
)  # fmt: skip
_OOD_WORDS = {
    "when": ("tonight", "tomorrow", "on saturday", "this weekend", "at 7", "next week", "today", "on friday"),
    "transport": ("taxi", "train", "flight", "bus"),
    "relative": ("grandad", "sister", "brother", "mum", "dad", "toddler", "friend", "cousin"),
    "place": ("hotel", "restaurant", "pub", "kitchen", "bank", "shop"),
    "other": ("train station", "post office", "hospital", "cinema", "cash machine", "pharmacy"),
    "service": ("taxi", "plumber", "doctor", "locksmith"),
}
# Chatty padding about the occasion, with no act in it.
_CHATTER = ("I'm visiting some friends", "we're in town for a conference", "it's my sister's birthday",
            "we've had a really long day", "my parents are coming over from abroad", "it's my first time in the city",
            "my colleague recommended asking you", "we've just moved here", "I've missed my last train",
            "I just need a bed for the night, nothing more", "as long as it's clean I'm happy")  # fmt: skip
# Asking about a slot one cannot answer ("what do you mean by pricerange?"): no value in it.
_DONT_KNOW_SLOT = ("what {n} options are there?", "what are my options for {n}?", "no idea about the {n}, what is there?",
                   "I've never thought about the {n}, what would you pick?", "which {n} would you suggest?",
                   "dunno which {n}, what have you got?")  # fmt: skip
_CONFUSED_SLOT = ("what do you mean by {n}?", "sorry, what's {n}?", "{n}? what do you mean", "I don't get what you mean by {n}",
                  "sorry, I'm lost, what {n}?")  # fmt: skip
_INSTEAD = ("is there a {v} one instead?", "how about {v} instead", "let's try {v} instead", "try {v} instead", "anything {v} instead?", "could we do {v} instead?", "what about {v}?",
            "I'd prefer {v}", "have you got something {v}?")  # fmt: skip

_ABBREVIATIONS = {"please": "pls", "people": "ppl", "tomorrow": "tmrw", "you": "u", "thanks": "thx",
                  "are": "r", "okay": "ok", "restaurant": "resto", "with": "w/",
                  "and": "&", "tonight": "tonite", "reservation": "res", "number": "no."}  # fmt: skip


class _Builder:
    """Text assembled from pieces, some of them labelled spans (offsets follow the text)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.spans: list[Span] = []
        self.length = 0

    def add(self, text: str, kind: str | None = None, value: str = "") -> None:
        if not text:
            return
        if self.parts and not self.parts[-1].endswith(" ") and not text.startswith((",", ".", "?", "!", " ")):
            self.parts.append(" ")
            self.length += 1
        if kind is not None:
            self.spans.append(Span(self.length, self.length + len(text), kind, value))
        self.parts.append(text)
        self.length += len(text)

    def text(self) -> str:
        return "".join(self.parts)


class ParaphraseGrammar:
    """Samples labelled user turns of one domain in the three registers."""

    def __init__(self, domain: Domain, rng: np.random.Generator) -> None:
        self.domain = domain
        self.rng = rng
        self.restaurant = "time" in domain.booking

    # -- small helpers -----------------------------------------------------------------------
    def pick(self, options: tuple[str, ...] | list[str]) -> str:
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def typo(self, word: str, register: int) -> str:
        """A letter dropped, doubled, swapped or replaced, more often in terse text."""
        if len(word) < 4 or not word.isalpha() or not self.chance((0.08, 0.03, 0.03)[register]):
            return word
        i = int(self.rng.integers(1, len(word) - 1))
        op = int(self.rng.integers(4))
        if op == 0:
            return word[:i] + word[i + 1 :]
        if op == 1:
            return word[:i] + word[i] + word[i:]
        if op == 2:
            return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
        return word[:i] + self.pick(list("aeiourstnl")) + word[i + 1 :]

    def styled(self, text: str, register: int) -> str:
        """Abbreviations and typos of terse writers, lower case; the words stay the words."""
        words = text.split(" ")
        out = []
        for w in words:
            low = w.lower()
            if (register == 0 and low in _ABBREVIATIONS and self.chance(0.35)) or (
                register > 0 and low in ("please", "thanks", "tomorrow", "people") and self.chance(0.08)
            ):
                w = _ABBREVIATIONS[low]
            out.append(self.typo(w, register))
        text = " ".join(out)
        if register == 0 or self.chance(0.2):
            text = text.lower()
        return text

    # -- value phrases -----------------------------------------------------------------------
    def value_surface(self, slot: str, value: str) -> str:
        forms = list(self.domain.surface_forms(value))
        if slot == "stars":
            forms = [f for f in forms if not f.isdigit()] + list(_STAR_WORDS.get(value, (value,)))
        return self.pick(forms)

    def add_value(self, b: _Builder, slot: str, value: str, register: int) -> None:
        """A slot value in a carrier phrase ("in the {north}"); only the value words are the span."""
        surface = self.styled(self.value_surface(slot, value), register)
        if slot == "stars" and "star" not in surface:
            frame = self.pick(("{v} star", "{v} stars", "{v}-star", "rated {v} stars", "with {v} stars"))
        elif " " in surface and slot != "stars":
            frame = self.pick(("{v}", "{v}", "{v}", *_SLOT_FRAMES.get(slot, ("{v}",))[1:3]))
        else:
            frame = self.pick(_SLOT_FRAMES.get(slot, ("{v}",)))
        before, _, after = frame.partition("{v}")
        if surface.startswith("the ") and before.endswith("the "):
            before = before[: -len("the ")]
        if slot == "stars" and "star" in surface:
            before, after = self.pick(("", "a ", "with ", "rated ")), ""
        b.add(before.strip())
        if after.startswith(("-", "ish")):
            start = b.length + (1 if b.parts and not b.parts[-1].endswith(" ") else 0)
            b.add(surface + after)
            b.spans.append(Span(start, start + len(surface), slot, value))
            return
        b.add(surface, slot, value)
        b.add(after.strip())

    def add_dontcare(self, b: _Builder, slot: str, register: int) -> None:
        if self.chance(0.5) and slot in _DONTCARE_SLOTLESS:
            b.add(self.styled(self.pick(_DONTCARE_SLOTLESS[slot]), register), f"dontcare:{slot}", "dontcare")
            return
        name = self.slot_name(slot)
        b.add(
            self.styled(self.pick(_DONTCARE_FRAMES[register]).format(n=name), register), f"dontcare:{slot}", "dontcare"
        )

    def slot_name(self, slot: str) -> str:
        """A word for the slot as people name it ("price range", "part of town")."""
        name = self.pick(list(self.domain.slot_names.get(slot, (slot,))) or [slot])
        return "area" if name == "where" else name

    def add_constraints(self, b: _Builder, informs: list[tuple[str, str]], register: int, lead: bool = True) -> None:
        """One clause giving constraints, in the order given (after a "looking for" when ``lead``)."""
        want = self.pick(_WANT[register]) if lead else ""
        if want:
            b.add(self.styled(want, register))
            if register > 0 and self.chance(0.5):
                b.add(self.pick(("a", "a nice", "some", "a good", "somewhere")))
        thing = self.domain.entity_type
        # Where the entity's name is a value ("hotel" is a type of hotel), saying it informs.
        named = next((s for s in self.domain.slots if thing in self.domain.values[self.domain.slots.index(s)]), None)
        if named is not None and any(s == named for s, _ in informs):
            named = None
        for i, (slot, value) in enumerate(informs):
            if i and register > 0:
                b.add("and" if i == len(informs) - 1 and self.chance(0.6) else ",")
            elif i and self.chance(0.3):
                b.add(",")
            if value == "dontcare":
                self.add_dontcare(b, slot, register)
            else:
                self.add_value(b, slot, value, register)
            if i == 0 and (register > 0 or named) and self.chance(0.25):
                word = self.pick((thing, "place", f"{thing}s"))
                if named is not None and word.startswith(thing):
                    b.add(self.styled(word, register), named, thing)
                else:
                    b.add(self.styled(word, register))

    # -- booking phrases ----------------------------------------------------------------------
    def add_booking(self, b: _Builder, booking: dict[str, str], register: int, now: datetime) -> None:
        items = list(booking.items())
        self.rng.shuffle(items)
        for i, (slot, value) in enumerate(items):
            if i and register > 0 and self.chance(0.5):
                b.add(self.pick((",", "and", ", and")))
            if slot == "people":
                self.add_people(b, int(value), register)
            elif slot == "day":
                self.add_day(b, value, register, now)
            elif slot == "time":
                self.add_time(b, value, register)
            elif slot == "stay":
                self.add_stay(b, int(value), register)

    def number(self, n: int) -> str:
        words = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}
        return words.get(n, str(n)) if self.chance(0.35) else str(n)

    def add_people(self, b: _Builder, n: int, register: int) -> None:
        if n == 1 and self.chance(0.4):
            b.add(
                self.pick(("just me", "only me", "for one", "on my own", "1 person", "myself", "solo")), "people", "1"
            )
            return
        if n == 2 and self.chance(0.2):
            b.add(
                self.pick(("the two of us", "for two", "a couple", "me and my wife", "me and a friend")), "people", "2"
            )
            return
        if n > 2 and self.chance(0.15):  # the speaker counts too
            others = self.pick(("friends", "mates", "others", "colleagues", "more"))
            frame = self.pick(("me and {x} {o}", "me + {x} {o}", "myself and {x} {o}", "me plus {x}"))
            b.add(self.styled(frame.format(x=self.number(n - 1), o=others), register), "people", str(n))
            return
        if n == 2 and self.chance(0.1):
            relative = self.pick(("daughter", "son", "partner", "wife", "husband", "friend", "mum", "boss"))
            b.add(f"{self.pick(('just ', 'only ', ''))}me and my {relative}", "people", "2")
            return
        x = self.number(n)
        noun = "room" if not self.restaurant else "table"
        frame = self.pick((f"{noun} for {{x}}", "{x} people", "for {x}", "{x} ppl", "{x} of us", "party of {x}",
                           "{x} persons", "{x} guests", "{x} pax", "for {x} people", "we are {x}", "{x}"))  # fmt: skip
        b.add(self.styled(frame.format(x=x), register), "people", str(n))

    def add_day(self, b: _Builder, day: str, register: int, now: datetime) -> None:
        today, tomorrow = WEEKDAYS[now.weekday()], WEEKDAYS[(now.weekday() + 1) % 7]
        if day == today and self.chance(0.5):
            b.add(
                self.styled(self.pick(("tonight", "today", "this evening", "tonite", "later today")), register),
                "day",
                day,
            )
            return
        if day == WEEKDAYS[(now.weekday() + 2) % 7] and self.chance(0.15):
            b.add(self.pick(("the day after tomorrow", "day after tomorrow")), "day", day)
            return
        if day == tomorrow and self.chance(0.5):
            b.add(self.styled(self.pick(("tomorrow", "tmrw", "tomorrow night", "tomorrow evening", "tmr")), register),
                  "day", day)  # fmt: skip
            return
        name = day if self.chance(0.7) else day[:3]
        if self.chance(0.1):
            name = day.capitalize()
        prefix = self.pick(("", "on", "this", "next", "for", "", "on"))
        b.add(prefix)
        b.add(self.typo(name, register), "day", day)

    def add_time(self, b: _Builder, value: str, register: int) -> None:
        hour, minute = (int(x) for x in value.split(":"))
        h12 = hour - 12 if hour > 12 else hour
        words = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
                 9: "nine", 10: "ten", 11: "eleven", 12: "twelve"}  # fmt: skip
        options = [value, f"{h12}:{minute:02d}", f"{h12}:{minute:02d}pm", f"{h12}.{minute:02d}"]
        if minute == 0:
            options += [f"{h12}pm", f"{h12} pm", f"{h12}ish", f"{h12} o'clock", words[h12], f"{h12}", f"{hour}h"]
        elif minute == 30:
            options += [f"half past {words[h12]}", f"half {words[h12]}", f"half past {h12}", f"{h12}.30pm"]
        elif minute == 15:
            options += [f"quarter past {words[h12]}"]
        elif minute == 45:
            options += [f"quarter to {words[h12 % 12 + 1]}"]
        if hour == 12 and minute == 0:
            options += ["noon", "midday"]
        surface = self.pick(options)
        prefix = self.pick(("at", "at", "around", "for", "", "about", "@"))
        b.add(prefix)
        b.add(surface, "time", value)

    def add_stay(self, b: _Builder, n: int, register: int) -> None:
        if n == 7 and self.chance(0.5):
            b.add(self.pick(("a week", "for a week", "one week")), "stay", "7")
            return
        if n == 2 and self.chance(0.2):
            b.add(self.pick(("the weekend", "for the weekend", "a weekend")), "stay", "2")
            return
        x = self.number(n)
        frame = (
            "{x} night"
            if n == 1
            else self.pick(("{x} nights", "for {x} nights", "{x} nts", "{x} night stay", "{x} nites"))
        )
        b.add(self.styled(frame.format(x=x), register), "stay", str(n))

    # -- requests ----------------------------------------------------------------------------
    def add_requests(self, b: _Builder, slots: list[str], register: int) -> None:
        for i, slot in enumerate(slots):
            if i:
                b.add("and")
            if slot in _REQUEST_QUESTIONS and self.chance(0.35):
                b.add(self.styled(self.pick(_REQUEST_QUESTIONS[slot]), register), f"request:{slot}", slot)
                continue
            frame = self.pick(_REQUEST_FRAMES[register])
            before, _, after = frame.partition("{x}")
            b.add(self.styled(before.strip(), register))
            b.add(self.styled(self.pick(_REQUEST_WORDS.get(slot, (slot,))), register), f"request:{slot}", slot)
            b.add(after.strip())

    # -- whole turns -------------------------------------------------------------------------
    def sample(self, now: datetime) -> LabelledTurn:
        """One labelled user turn, answering a sampled system prompt."""
        d = self.domain
        register = int(self.rng.integers(3))
        ctx = self.pick(CONTEXTS)
        slot = self.pick(list(d.slots))
        value = self.pick(list(d.values[d.slots.index(slot)]))
        context = context_of(ctx, slot if ctx in ("request", "suggest", "confirm") else None,
                             value if ctx == "confirm" else None)  # fmt: skip
        b = _Builder()
        intents: set[str] = set()
        if self.chance(0.07):
            frame = self.pick(_OOD_FRAMES) if self.chance(0.5) else self.pick(_OOD)
            words = {k: self.pick(v) for k, v in _OOD_WORDS.items()}
            b.add(self.styled(frame.format(**words), register))
            return self._done(b, context, intents, register)
        if register == 2 and self.chance(0.5):
            b.add(self.pick(_FILLERS) + ",")
        if ctx in ("greet", "explain") and self.chance(0.3):
            b.add(self.styled(self.pick(_GREETINGS), register) + self.pick(("", ",", ".", "!")))
            if self.chance(0.3):
                if self.chance(0.4):  # "Hello, I need a place to stay.": the entity, no constraint yet
                    b.add(self.styled(self.pick(_WANT[register]) or "need", register))
                    b.add(f"{self.pick(('a', 'some', 'a good'))} {self.domain.entity_words}")
                intents.add("hello")
                return self._done(b, context, intents, register)
        move = self._move(ctx)
        if move == "short":
            act = self.pick(("affirm", "negate", "ack", "dont_know", "confused", "bye", "hangup", "book"))
            act = {"confirm": self.pick(("affirm", "negate", act)), "offer": self.pick(("affirm", "ack", act)),
                   "reqmore": self.pick(("bye", "negate", act))}.get(ctx, act)  # fmt: skip
            phrases = {"affirm": _AFFIRM, "negate": _NEGATE, "ack": _ACK, "dont_know": _DONT_KNOW,
                       "confused": _CONFUSED, "bye": _BYE, "hangup": _HANGUP, "book": _BOOK}[act]  # fmt: skip
            if act in ("dont_know", "confused") and ctx in ("request", "suggest", "request_all") and self.chance(0.4):
                asked = slot if ctx != "request_all" else self.pick(list(d.slots))
                frame = self.pick(_DONT_KNOW_SLOT if act == "dont_know" else _CONFUSED_SLOT)
                b.add(self.styled(frame.format(n=self.slot_name(asked)), register))
            else:
                if register < 2 and self.chance(0.15):  # "oh ok", "ah thanks bye"
                    b.add(self.pick(("oh", "ah", "hmm", "um", "well")))
                b.add(self.styled(self.pick(phrases[register]), register))
            intents.add(act)
            if act == "negate" and ctx == "reqmore":
                intents = {"bye"}  # "no thanks" to "anything else?" is a closing
            if act == "book" and self.chance(0.4):
                self.add_booking(b, self._booking(), register, now)
            return self._done(b, context, intents, register)
        if move == "answer" and ctx in ("request", "suggest"):
            if self.chance(0.15):
                b.add(self.styled(self.pick(_DONTCARE_GENERIC), register), "dontcare", "dontcare")
                intents.add("inform")
            else:
                self.add_value(b, slot, value, register)
                if self.chance(0.3):
                    b.add(self.styled(self.pick(("please", "pls", "thanks", "would be good", "is fine")), register))
                intents.add("inform")
            if self.chance(0.2):
                self._extra(b, intents, register, now)
            return self._done(b, context, intents, register)
        if move == "correct":  # "no, make it Thai", "No thanks, is there a cheap one instead?"
            b.add(self.styled(self.pick(_NEGATE[register]), register) + self.pick((",", "", ".", " -")))
            other = [v for v in d.values[d.slots.index(slot)] if v != value] or [value]
            if self.chance(0.3):  # the refused value, said but not meant: no span
                b.add(f"not {self.styled(self.value_surface(slot, value), register)},")
            if ctx == "confirm" or self.chance(0.4):
                b.add(self.pick(("make it", "I want", "I said", "it's", "", "I wanted", "actually", "I meant")))
                self.add_value(b, slot, self.pick(other), register)
            else:
                before, _, after = self.pick(_INSTEAD).partition("{v}")
                b.add(self.styled(before.strip(), register))
                self.add_value(b, slot, self.pick(other), register)
                b.add(after.strip())
            intents |= {"negate", "inform"}
            return self._done(b, context, intents, register)
        if ctx in ("confirm", "offer") and move == "yes_and":
            b.add(self.styled(self.pick(_AFFIRM[register]), register) + self.pick((",", "", ".", "!")))
            intents.add("affirm")
            self._extra(b, intents, register, now, allow_inform=ctx == "confirm")
            return self._done(b, context, intents, register)
        if ctx == "ask_booking" and move == "answer":
            if register == 2 and self.chance(0.3):
                b.add(self.pick(_CHATTER) + self.pick((", so", ".", " and")))
            self.add_booking(b, self._booking(), register, now)
            intents.add("book")
            return self._done(b, context, intents, register)
        if ctx in ("offer", "inform", "reqmore") and move == "request":
            self.add_requests(b, self._requests(), register)
            intents.add("request")
            if self.chance(0.2):
                self._extra(b, intents, register, now, allow_inform=False)
            return self._done(b, context, intents, register)
        # Constraints, perhaps with booking details and a request ("cheap italian, table for 2 at 7").
        informs = self._informs()
        if register == 2 and self.chance(0.25):
            b.add(self.pick(_CHATTER) + self.pick((", so", ".", " and")))
        if ctx in ("no_match", "offer") and self.chance(0.3):  # "how about Chinese instead?": no "no" in it
            before, _, after = self.pick(_INSTEAD).partition("{v}")
            b.add(self.styled(before.strip(), register))
            self.add_value(b, slot, value, register)
            b.add(after.strip())
            intents.add("inform")
            return self._done(b, context, intents, register)
        if self.chance(0.1):  # "I'd like a table at a British place"
            noun = "a table" if self.restaurant else "a room"
            lead = self.pick(("I'd like {n} at", "can we get {n} at", "book us {n} at", "looking to book {n} at",
                              "{n} at", "can I reserve {n} at"))  # fmt: skip
            b.add(self.styled(lead.format(n=noun), register))
            intents.add("book")
        self.add_constraints(b, informs, register, lead="book" not in intents)
        intents.add("inform")
        if self.chance(0.3):
            self._extra(b, intents, register, now, allow_inform=False)
        if register == 2 and self.chance(0.5):
            b.add(", " + self.pick(_HEDGES))
        return self._done(b, context, intents, register)

    def _move(self, ctx: str) -> str:
        weights = {
            "request": {"answer": 0.7, "inform": 0.15, "short": 0.15},
            "suggest": {"answer": 0.7, "inform": 0.1, "short": 0.2},
            "confirm": {"short": 0.5, "correct": 0.3, "yes_and": 0.2},
            "offer": {"short": 0.3, "yes_and": 0.25, "request": 0.2, "inform": 0.15, "correct": 0.1},
            "no_match": {"inform": 0.7, "correct": 0.15, "short": 0.15},
            "inform": {"short": 0.5, "request": 0.4, "inform": 0.1},
            "reqmore": {"short": 0.6, "request": 0.3, "inform": 0.1},
            "ask_booking": {"answer": 0.8, "short": 0.2},
            "book": {"short": 0.8, "request": 0.0, "inform": 0.2},
        }.get(ctx, {"inform": 0.85, "short": 0.15})
        moves = list(weights)
        p = np.array([weights[m] for m in moves])
        return moves[int(self.rng.choice(len(moves), p=p / p.sum()))]

    def _extra(self, b: _Builder, intents: set[str], register: int, now: datetime, allow_inform: bool = True) -> None:
        """A second intent in the same turn: booking details, a booking request, a request or constraints."""
        options = ["booking", "book", "request"] + (["inform"] if allow_inform else [])
        kind = self.pick(options)
        b.add(self.pick((",", ".", "and", ", and", " -", ", also", ". also")))
        if kind == "booking":
            if self.chance(0.5):
                b.add(self.styled(self.pick(_TABLE_BOOK if self.restaurant else _ROOM_BOOK), register))
            self.add_booking(b, self._booking(), register, now)
            intents.add("book")
        elif kind == "book":
            b.add(self.styled(self.pick(_BOOK[register]), register))
            intents.add("book")
        elif kind == "request":
            self.add_requests(b, self._requests(), register)
            intents.add("request")
        else:
            self.add_constraints(b, self._informs(max_n=2), register)
            intents.add("inform")

    def _informs(self, max_n: int | None = None) -> list[tuple[str, str]]:
        d = self.domain
        n = int(self.rng.integers(1, (max_n or d.n_slots) + 1))
        slots = [d.slots[int(i)] for i in self.rng.permutation(d.n_slots)[:n]]
        out = []
        for s in slots:
            dontcare = self.chance(0.12)
            out.append((s, "dontcare" if dontcare else self.pick(list(d.values[d.slots.index(s)]))))
        return out

    def _booking(self) -> dict[str, str]:
        d = self.domain
        out: dict[str, str] = {}
        n = int(self.rng.integers(1, len(d.booking) + 1))
        for slot in [list(d.booking)[int(i)] for i in self.rng.permutation(len(d.booking))[:n]]:
            kind = d.booking_kinds.get(slot)
            if kind == "count":
                out[slot] = str(int(self.rng.choice([1, 2, 2, 3, 4, 4, 5, 6, 7, 8])))
            elif kind == "clock":
                hour = int(self.rng.choice([12, 13, 17, 18, 19, 20, 21]))
                out[slot] = f"{hour:02d}:{int(self.rng.choice([0, 0, 0, 30, 15, 45])):02d}"
            else:
                out[slot] = self.pick(list(d.booking[slot]))
        return out

    def _requests(self) -> list[str]:
        req = list(self.domain.requestable)
        n = 1 if self.chance(0.75) else 2
        return [req[int(i)] for i in self.rng.permutation(len(req))[:n]]

    def _done(self, b: _Builder, context: str, intents: set[str], register: int) -> LabelledTurn:
        text = b.text().strip()
        if register == 0 and text and not text.endswith(("?", ".", "!")) and self.chance(0.2):
            text += "."  # "french."
        if register == 1 and text and self.chance(0.6):
            text = text[0].upper() + text[1:]
            if not text.endswith(("?", ".", "!")):
                text += self.pick((".", "", "!"))
        spans = tuple(s for s in b.spans if s.end <= len(text))
        return LabelledTurn(text, context, tuple(sorted(intents)), spans, self.domain.name, register)


def sample_turns(domain: Domain, n: int, seed: int = 0, now: datetime | None = None) -> list[LabelledTurn]:
    """``n`` labelled turns of ``domain``; the days are resolved against ``now`` (varied per turn)."""
    rng = np.random.default_rng(seed)
    grammar = ParaphraseGrammar(domain, rng)
    base = now or datetime(2026, 1, 5, 12)
    return [grammar.sample(base + timedelta(days=int(rng.integers(7)))) for _ in range(n)]
