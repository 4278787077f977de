#!/usr/bin/env python3
"""Writes scripts/data/calibration.txt: the texts int8 quantization calibrates on.

They are made here, from their own vocabulary and sentence shapes, so that they share no sentence
with the held-out texts the quality gates measure on (benches/data/sentences.txt and the golden
fixtures). Seeded: running it again writes the same file.

Usage: make_calibration_texts.py [OUT] [COUNT]
"""

import random
import sys
from pathlib import Path

SUBJECTS = [
    "The committee", "A retired pilot", "Our support team", "The new firmware", "My grandmother",
    "This open-source library", "The city council", "A small bakery", "The research group",
    "Every delivery driver", "The museum guide", "A curious student", "The night shift nurse",
    "Their marketing department", "The weather station", "An independent journalist",
]
VERBS = [
    "postponed", "documented", "rebuilt", "questioned", "translated", "summarised", "approved",
    "tested", "criticised", "recommended", "measured", "archived", "simplified", "announced",
]
OBJECTS = [
    "the quarterly budget", "a fragile prototype", "the evacuation plan", "two overdue invoices",
    "the migration guide", "a long list of complaints", "the river's water quality",
    "an unusual chess opening", "the subscription prices", "a recipe for sourdough bread",
    "the warranty conditions", "the results of the clinical trial", "a map of hiking trails",
    "the password reset flow", "the solar panel output", "an old vinyl collection",
]
ENDINGS = [
    "after a heated discussion", "without telling anyone", "for the third time this year",
    "because of the storm", "in under ten minutes", "to everyone's surprise", "on Tuesday morning",
    "despite the tight deadline", "with help from volunteers", "while the servers were down",
]
QUESTIONS = [
    "How do I {verb} {obj}?", "Why was {obj} {verb} so late?", "Who {verb} {obj} last week?",
    "Can you explain how {obj} gets {verb}?", "What happens if nobody has {verb} {obj}?",
]
FRAGMENTS = [
    "error 504 when uploading large files", "cheap flights to Lisbon in October",
    "symptoms of vitamin D deficiency", "best practices for database backups",
    "how to fix a leaking kitchen tap", "difference between a loan and a mortgage",
    "train timetable Munich to Vienna", "gluten free pancake recipe",
    "python list comprehension with condition", "return policy for damaged items",
]
OTHER_LANGUAGES = [
    "Le conseil municipal a approuvé le nouveau budget.", "El museo abre sus puertas a las nueve.",
    "Die Lieferung kommt voraussichtlich morgen an.", "Il treno per Roma è in ritardo di venti minuti.",
    "O relatório anual foi publicado ontem.", "De bakkerij verkoopt vers brood sinds 1952.",
    "Поезд прибывает на третий путь.", "会议将在下午三点开始。", "天気予報によると明日は雨です。",
    "회의록은 내일까지 공유하겠습니다.", "Kết quả kiểm tra sẽ có vào tuần sau.",
]


def sentence(rng: random.Random) -> str:
    shape = rng.random()
    if shape < 0.5:
        text = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(ENDINGS)}."
        if rng.random() < 0.3:  # some longer, two-sentence inputs
            text += f" {rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} as well."
        return text
    if shape < 0.75:
        return rng.choice(QUESTIONS).format(verb=rng.choice(VERBS), obj=rng.choice(OBJECTS))
    if shape < 0.92:
        return rng.choice(FRAGMENTS)
    return rng.choice(OTHER_LANGUAGES)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data/calibration.txt"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 400
    rng = random.Random(20261201)
    texts, seen = [], set()
    while len(texts) < count:
        text = sentence(rng)
        if text not in seen:
            seen.add(text)
            texts.append(text)
    out.write_text("\n".join(texts) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
