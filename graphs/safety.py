"""Rule-based triage and safety texts for the assistant graph (DESIGN.md §2, triage node).

Everything here is a pure function of its arguments: no model, no graph, no I/O. The triage node
routes by :func:`triage_by_rules` alone (no model refines the route).

What the rules do:

- :func:`detect_emergency` recognises first-person (or "my father ...", "he ...") present-tense
  acute situations — chest pain now, collapse, stroke signs, suicidal intent, overdose, poisoning,
  anaphylaxis, uncontrolled bleeding, seizures, not breathing — and stays quiet on research or
  educational questions about the same topics ("sensitivity of troponin for acute chest pain").
  Each rule is one of three strengths: *personal* patterns name who is affected and fire unless the
  sentence is hypothetical ("what should I do if ...") or, for symptoms, the text says the problem
  is long-standing; *strong* phrases ("bleeding that won't stop") fire unless the question is
  framed as research; *contextual* signs ("face drooping") fire only with a personal or acute
  context (a minute count, "right now", "my ...", a trigger such as a bee sting).
- :func:`triage_by_rules` adds greetings, calculator requests, out-of-scope requests and
  ambiguity (no subject, an unresolved "it", an abbreviation with unrelated readings), using the
  earlier user turns and attached images to resolve ambiguity.
- The injection heuristics (:func:`looks_like_injection`, re-exported from
  :mod:`medgraph.knowledge.injection`) flag retrieved passages at retrieval (``Evidence.flags``);
  untrusted text is fenced by :func:`medgraph.knowledge.untrusted.fence_untrusted`.

Limitation: the rules are written for English. Other languages are not understood — an emergency
described in Spanish or German is *not* detected here — and such questions are only flagged with
the reason ``language:not_english_suspected`` so the route report shows the rules were blind.
Clinician-framed questions ("my patient has chest pain") are treated as questions, not as the
user's own emergency.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from medgraph.knowledge.injection import looks_like_injection

__all__ = [
    "EMERGENCY_ANSWER",
    "EMERGENCY_KINDS",
    "NOT_FOR_CLINICAL_USE",
    "TriageDecision",
    "detect_emergency",
    "emergency_answer",
    "looks_like_injection",
    "match_emergency",
    "triage_by_rules",
]

# --------------------------------------------------------------------------------------------
# Safety texts
# --------------------------------------------------------------------------------------------

NOT_FOR_CLINICAL_USE = (
    "This answer comes from an automated research tool (medgraph, with MedGemma models where "
    "configured) for research and information only; it is not intended to directly inform "
    "clinical diagnosis, patient management, treatment decisions or any other direct clinical "
    "practice. Always consult a qualified health professional about a specific medical situation."
)

EMERGENCY_ANSWER = (
    "This may be a medical emergency. Call your local emergency number now — for example 911 "
    "(US, Canada), 112 (EU and many other countries) or 999 (UK) — or get to the nearest "
    "emergency department. Do not wait for an online answer, and do not drive yourself if you are "
    "unwell. If someone has collapsed and is not breathing normally, call for help and start CPR "
    "if you know how; the emergency operator can guide you. For a poisoning or an overdose, your "
    "emergency number or local poison control centre can advise you.\n\n"
    "If you are having thoughts of suicide or of harming yourself, please reach out right now: in "
    "the US call or text 988 (Suicide & Crisis Lifeline); elsewhere call your local crisis line "
    "or emergency number — most countries have one. If you can, stay with someone you trust.\n\n"
    "This service cannot assess an emergency or give a diagnosis; a medical professional needs to "
    "see you, or the person you are with, straight away."
)

EMERGENCY_KINDS: tuple[str, ...] = (
    "suicide",
    "overdose",
    "poisoning",
    "anaphylaxis",
    "cardiac",
    "stroke",
    "seizure",
    "bleeding",
    "breathing",
    "unresponsive",
)
"""Every kind :func:`detect_emergency` returns, most specific first (the first that fires wins)."""

_FIRST_AID_LINES: dict[str, str] = {
    "stroke": "Note the time the symptoms started and tell the emergency services.",
    "anaphylaxis": (
        "If an adrenaline (epinephrine) auto-injector has been prescribed, use it as instructed "
        "while you wait for help."
    ),
    "bleeding": "While you wait, press firmly on the wound with a clean cloth and keep pressing.",
    "overdose": "Keep the packaging or container to show the emergency services.",
    "poisoning": "Keep the packaging or container to show the emergency services.",
    "seizure": "Move hard objects away, do not put anything in the mouth, and time the seizure.",
    "cardiac": "If an automated external defibrillator (AED) is nearby, ask someone to fetch it.",
}


def emergency_answer(kind: str | None = None) -> str:
    """:data:`EMERGENCY_ANSWER` plus one standard first-aid line for ``kind`` where it has one."""
    line = _FIRST_AID_LINES.get(kind or "")
    return f"{EMERGENCY_ANSWER}\n\n{line}" if line else EMERGENCY_ANSWER


# --------------------------------------------------------------------------------------------
# Text normalisation shared by the rules
# --------------------------------------------------------------------------------------------

_CONTRACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(?:can'?t|cannot|can not)\b"), "cannot"),
    (re.compile(r"\bwon'?t\b"), "will not"),
    (
        re.compile(r"\b(is|are|was|were|does|do|did|has|have|had|could|would|should)n'?t\b"),
        r"\1 not",
    ),
    (re.compile(r"\bi'm\b"), "i am"),
    # "im" without an apostrophe only before a verb or adjective: "IM" is also intramuscular.
    (
        re.compile(
            r"\bim (?=(?:\w+ing|so|not|really|very|scared|afraid|suicidal|pregnant|about)\b)"
        ),
        "i am ",
    ),
    (re.compile(r"\bi'?ve\b"), "i have"),
    (re.compile(r"\bi'll\b"), "i will"),
    (re.compile(r"\bi'd\b"), "i would"),
    (re.compile(r"\b(he|she|it|that|there|who)'s\b"), r"\1 is"),
    (re.compile(r"\b(you|we|they)'re\b"), r"\1 are"),
)


def _normalise(text: str) -> str:
    """Lower-case, straight apostrophes, contractions expanded, whitespace collapsed."""
    folded = unicodedata.normalize("NFKC", text)
    folded = folded.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'").lower()
    for pattern, replacement in _CONTRACTIONS:
        folded = pattern.sub(replacement, folded)
    return re.sub(r"\s+", " ", folded).strip()


# --------------------------------------------------------------------------------------------
# Emergency rules
# --------------------------------------------------------------------------------------------

_RELATIVE = (
    r"(?:mother|mom|mum|mommy|mummy|father|dad|daddy|son|daughter|child|kid|baby|infant|toddler|"
    r"husband|wife|partner|spouse|boyfriend|girlfriend|fianc[eé]e?|friend|brother|sister|"
    r"grandmother|grandma|granny|grandfather|grandpa|uncle|aunt|cousin|roommate|flatmate|"
    r"neighbou?r|colleague|coworker|co-worker|boss|nephew|niece|relative|grandson|granddaughter|"
    r"teenager|teen|stepdad|stepmom|stepmum|stepfather|stepmother|parent|family member|"
    r"classmate|housemate|(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten)[- ]"
    r"(?:year|month|week)[- ]old|yo)s?"
)
# Someone other than the user whose emergency the user is describing.
_OTHER_PERSON = (
    rf"(?:(?:my|our)\s+(?:[\w-]+\s+){{0,3}}?{_RELATIVE}|he|she|someone|somebody|"
    r"a\s+(?:man|woman|person|guy|lady|child|kid|boy|girl|baby|stranger|passenger)|"
    r"(?:this|that)\s+(?:man|woman|person|guy|lady|baby|child|kid|boy|girl))"
)
_SUBJECT = rf"(?:i|we|{_OTHER_PERSON})"
_SELF_HAS = (
    r"i\s+(?:have|am having|have been having|have got|got|am getting|keep having|keep getting|"
    r"feel|am feeling|am experiencing|suddenly have|suddenly got|now have|just got|"
    r"woke up with|have had|still have)"
)
_OTHER_HAS = (
    rf"{_OTHER_PERSON}\s+(?:has|is having|has been having|has got|got|is getting|keeps having|"
    r"feels|is feeling|is experiencing|suddenly has|suddenly got|now has|just got|woke up with|"
    r"has had|still has|is complaining of|is complaining about|complains of)"
)
_HAS = rf"(?:{_SELF_HAS}|{_OTHER_HAS})"
_SYMPTOM_ADJECTIVES = (
    r"(?:(?:a|an|some|really|very|so|sudden|severe|crushing|bad|sharp|terrible|horrible|strong|"
    r"intense|squeezing|heavy|tight|new|awful|excruciating|unbearable|extreme|stabbing|massive|"
    r"pressure-like|constant|left-sided|central|burning|radiating|this|the|of|kind|sort|and|"
    r"like|weird|strange|horrible)\s+){0,5}"
)
_CHEST_SYMPTOM = (
    r"(?:chest\s+(?:pain|pains|pressure|tightness|discomfort|heaviness|ache)|"
    r"pains?\s+in\s+(?:my|his|her|the)\s+chest|"
    r"(?:tight|heavy|crushing|squeezing)\s+(?:feeling\s+in\s+(?:my|his|her|the)\s+)?chest)"
)
_POISON = (
    r"(?:bleach|antifreeze|rat poison|poison|pesticides?|insecticides?|herbicides?|weed ?killer|"
    r"drain cleaner|oven cleaner|lye|button batter(?:y|ies)|batter(?:y|ies)|detergent|"
    r"laundry (?:pod|capsule)s?|tide pods?|dishwasher (?:tablet|pod)s?|paint thinner|turpentine|"
    r"gasoline|petrol|kerosene|lamp oil|methanol|windshield washer|washer fluid|"
    r"(?:wild|poisonous) mushrooms?|cleaning (?:product|fluid|liquid)s?|toilet cleaner|ammonia|"
    r"mothballs?|lighter fluid|nail polish remover|acetone|battery acid|e-?liquid|"
    r"vape (?:juice|liquid)|nicotine (?:liquid|juice)|magnets?|chemicals?|hand saniti[sz]er|"
    r"rubbing alcohol|isopropyl|essential oils?)"
)

_Strength = Literal["personal", "strong", "contextual"]


@dataclass(frozen=True)
class _EmergencyRule:
    """One emergency pattern and the conditions under which it counts."""

    name: str
    kind: str
    pattern: re.Pattern[str]
    strength: _Strength
    hypothetical_suppresses: bool = True
    chronic_suppresses: bool = False
    needs_trigger: bool = False


def _rule(
    name: str,
    kind: str,
    pattern: str,
    strength: _Strength,
    *,
    hypothetical: bool = True,
    chronic: bool = False,
    needs_trigger: bool = False,
) -> _EmergencyRule:
    return _EmergencyRule(
        name=name,
        kind=kind,
        pattern=re.compile(pattern),
        strength=strength,
        hypothetical_suppresses=hypothetical,
        chronic_suppresses=chronic,
        needs_trigger=needs_trigger,
    )


_EMERGENCY_RULES: tuple[_EmergencyRule, ...] = (
    # --- suicide and self-harm: never suppressed as hypothetical ("what if I kill myself") -----
    _rule(
        "suicide_reflexive",
        "suicide",
        r"\b(?:kill(?:ing)?|hang(?:ing)?|shoot(?:ing)?|stab(?:bing)?|drown(?:ing)?|end(?:ing)?|"
        r"off(?:ing)?)\s+myself\b",
        "personal",
        hypothetical=False,
    ),
    _rule(
        "self_harm_intent",
        "suicide",
        r"\b(?:want|wanna|going|gonna|plan|planning|thinking about|thinking of|thought about|"
        r"think about|urge|urges|tempted|trying|tried|feel like|feeling like|keep)\b[^.?!]{0,20}?"
        r"\b(?:hurt(?:ing)?|harm(?:ing)?|cut(?:ting)?|burn(?:ing)?|poison(?:ing)?|"
        r"overdos(?:e|ing)|starv(?:e|ing))\s+myself\b",
        "personal",
        hypothetical=False,
    ),
    _rule(
        "self_harm_ongoing",
        "suicide",
        r"\bi\s+(?:have been|am|keep|started|have started)\s+(?:self-?harming|cutting myself|"
        r"cutting again|hurting myself)",
        "personal",
        hypothetical=False,
    ),
    _rule(
        "suicide_end_life",
        "suicide",
        r"\b(?:end|take|ending|taking)\s+my\s+(?:own\s+)?life\b|\bend it all\b|"
        r"\bno (?:reason|point) (?:to|in) (?:live|living|go on|going on)\b|"
        r"\bi\s+(?:do not|no longer)\s+want\s+to\s+(?:live|be alive|exist|wake up|be here)\b|"
        r"\bi\s+(?:really\s+|just\s+)?(?:want|wanna|wish)\s+(?:to\s+)?(?:die|be dead|"
        r"disappear forever|not wake up|never wake up)\b|"
        r"\bbetter off (?:dead|without me)\b",
        "personal",
        hypothetical=False,
    ),
    _rule(
        "suicidal_self",
        "suicide",
        r"\bi\s+(?:am|feel|have been|have been feeling|keep feeling|am feeling)\s+"
        r"(?!not\b)(?:\w+\s+)?suicidal\b|"
        r"\bi\s+(?:have|am having|keep having|have been having|get|am getting|keep getting)\s+"
        r"(?:\w+\s+)?(?:suicidal|thoughts (?:of|about) (?:suicide|killing myself|dying|ending))",
        "personal",
        hypothetical=False,
    ),
    _rule(
        "suicide_intent",
        "suicide",
        r"\bi\s+(?:want|wanna|am going|am gonna|plan|am planning|will|am thinking about|"
        r"am thinking of|think about|thought about|am about|have decided|decided|tried|"
        r"just tried|attempted|just attempted)\s+(?:to\s+)?(?:commit(?:ting)?\s+suicide|"
        r"attempt(?:ing)?\s+suicide|suicide)\b|"
        r"\b(?:write|wrote|writing|written)\s+(?:a|my)\s+suicide note\b",
        "personal",
        hypothetical=False,
    ),
    _rule(
        "suicide_means",
        "suicide",
        r"\bhow many\s+(?:\w+\s+){0,2}?(?:pills|tablets|capsules)?\s*(?:would it take|does it take|"
        r"do i need|to take|should i take|would i need)\s+to\s+(?:die|kill|overdose|end)\b|"
        r"\b(?:lethal|fatal|deadly)\s+(?:dose|amount)\b[^.?!]{0,60}?\bto\s+"
        r"(?:die|kill (?:myself|me)|end (?:it|my life))\b|"
        r"\b(?:painless|quick|easiest|best) way to "
        r"(?:die|kill myself|end my life|commit suicide)\b",
        "personal",
        hypothetical=False,
    ),
    _rule(
        "suicide_other",
        "suicide",
        rf"\b{_OTHER_PERSON}\b[^.?!]{{0,40}}?\b(?:kill(?:ing)?|hang(?:ing)?|shoot(?:ing)?|"
        r"hurt(?:ing)?|harm(?:ing)?|end(?:ing)?)\s+(?:himself|herself|themselves|themself)\b|"
        rf"\b{_OTHER_PERSON}\s+(?:is|has been|seems|keeps|is being)\s+(?:\w+\s+)?"
        r"(?:suicidal|talking about (?:suicide|killing|dying|ending (?:it|his life|her life)))",
        "personal",
        hypothetical=False,
    ),
    # --- overdose ----------------------------------------------------------------------------
    _rule(
        "overdose_count",
        "overdose",
        rf"\b{_SUBJECT}\s+(?:just\s+|accidentally\s+|may have\s+|might have\s+)?(?:took|swallowed|"
        r"ate|downed|popped|have taken|has taken|have swallowed|has swallowed|has eaten|"
        r"have eaten)\s+(?:about\s+|like\s+|around\s+|over\s+|maybe\s+|nearly\s+|almost\s+|"
        r"more than\s+)?(?:[1-9]\d+(?!\s*(?:mg|mcg|µg|ug|g|grams?|ml|milligrams?|micrograms?|"
        r"units?|iu|mmol|%|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?|times?|"
        r"steps?|breaths?)\b)|a\s+(?:whole|full|entire)\s+(?:bottle|box|pack|packet|strip|"
        r"blister)|(?:all|the rest)\s+(?:of\s+)?(?:my|his|her|the|their)\s+(?:\w+\s+)?"
        r"(?:pills|tablets|capsules|painkillers|sleeping pills|antidepressants|opioids)|"
        r"too many|too much|a handful|handfuls|ten|twelve|fifteen|twenty|thirty|forty|fifty|"
        r"a hundred|dozens|a bunch of (?:pills|tablets))",
        "personal",
        hypothetical=False,
        chronic=True,
    ),
    _rule(
        "overdosed",
        "overdose",
        rf"\b{_SUBJECT}\s+(?:just\s+|accidentally\s+|may\s+have\s+|might\s+have\s+|have\s+|has\s+|"
        r"am\s+|is\s+)?(?:overdosed|overdosing|od'?d|od'?ing)\b",
        "personal",
        chronic=True,
    ),
    _rule(
        "child_ingested_medicine",
        "overdose",
        r"\b(?:my|our)\s+(?:[\w-]+\s+){0,3}?(?:son|daughter|child|kid|baby|toddler|infant|"
        r"grandson|granddaughter|nephew|niece)s?\s+(?:just\s+|accidentally\s+|may\s+have\s+|"
        r"might\s+have\s+|has\s+)?(?:ate|eaten|swallowed|took|taken|got into|chewed)\s+"
        r"(?:[\w-]+\s+){0,4}?(?:pills|tablets|capsules|medicines?|medications?|meds|"
        r"antidepressants|painkillers|sleeping pills|gummies|vitamins|iron tablets|patch(?:es)?)\b",
        "personal",
    ),
    # --- poisoning / envenomation ------------------------------------------------------------
    _rule(
        "poison_ingested",
        "poisoning",
        rf"\b{_SUBJECT}\s+(?:just\s+|accidentally\s+|may\s+have\s+|might\s+have\s+|has\s+|have\s+)?"
        r"(?:drank|drunk|swallowed|ate|eaten|ingested|inhaled|got into|chewed|licked)\s+"
        rf"(?:[\w-]+\s+){{0,4}}?{_POISON}\b",
        "personal",
    ),
    _rule(
        "carbon_monoxide_alarm",
        "poisoning",
        r"\bcarbon monoxide\s+(?:alarm|detector)\s+(?:is\s+|keeps\s+)?(?:going off|went off|"
        r"beeping|sounding)",
        "strong",
    ),
    _rule(
        "venomous_bite",
        "poisoning",
        rf"\b{_SUBJECT}\s+(?:was\s+|got\s+|has been\s+|just got\s+|have been\s+|am\s+|is\s+)?"
        r"(?:just\s+)?bitten by an?\s+(?:\w+\s+)?(?:snake|rattlesnake|adder|viper|cobra|"
        r"black widow|brown recluse|funnel-web|scorpion)",
        "personal",
    ),
    # --- anaphylaxis ---------------------------------------------------------------------------
    _rule(
        "throat_closing",
        "anaphylaxis",
        r"\bthroat\s+(?:is\s+|feels\s+(?:like\s+it\s+is\s+)?|keeps\s+|started\s+)?(?:swelling|"
        r"swollen|closing|tightening|getting tight|getting tighter|swelling up|swelling shut|"
        r"swollen shut)\b",
        "contextual",
    ),
    _rule(
        "allergic_swelling",
        "anaphylaxis",
        r"\b(?:tongue|lips?|face|mouth|eyes?)\s+(?:is\s+|are\s+|has\s+|have\s+|started\s+)?"
        r"(?:swelling|swollen|swelled|puffing up|blowing up)\b",
        "contextual",
        needs_trigger=True,
    ),
    _rule(
        "anaphylaxis_now",
        "anaphylaxis",
        rf"\b{_SUBJECT}\s+(?:am|is|are|think (?:i|he|she) (?:am|is))\s+(?:having|going into|in)\s+"
        r"(?:an?\s+)?(?:anaphyla\w*|severe allergic reaction)",
        "personal",
    ),
    _rule(
        "epinephrine_use",
        "anaphylaxis",
        r"\b(?:used|gave|give|giving|inject|injected|use|need to use|should i use|have to use)\s+"
        r"(?:(?:him|her|them|me)\s+)?(?:(?:my|his|her|an|the|their)\s+)?(?:epi-?pen|"
        r"(?:adrenaline|epinephrine) auto-?injector|auvi-?q)",
        "contextual",
    ),
    # --- cardiac -------------------------------------------------------------------------------
    _rule(
        "chest_pain_now",
        "cardiac",
        rf"\b{_HAS}\s+{_SYMPTOM_ADJECTIVES}{_CHEST_SYMPTOM}",
        "personal",
        chronic=True,
    ),
    _rule(
        "chest_hurts",
        "cardiac",
        r"\b(?:my|his|her)\s+chest\s+(?:is\s+|feels\s+)?(?:hurts|hurting|is killing|so tight|tight|"
        r"heavy|crushing|being (?:crushed|squeezed)|like (?:an elephant|a weight|someone is "
        r"sitting))",
        "personal",
        chronic=True,
    ),
    _rule(
        "heart_attack_now",
        "cardiac",
        rf"\b{_SUBJECT}\s+(?:am|is|are|might be|may be|could be)\s+having\s+(?:a\s+)?"
        r"(?:heart attack|cardiac arrest)",
        "personal",
    ),
    _rule(
        "collapsed_not_breathing",
        "cardiac",
        r"\b(?:collapsed|unconscious|unresponsive|passed out|fell down|not responding|keeled over)"
        r"\b[^.?!]{0,80}?\b(?:not|stopped|no longer|barely)\s+breathing\b|"
        r"\b(?:not|stopped|no longer)\s+breathing\b[^.?!]{0,80}?\b(?:collapsed|unconscious|"
        r"unresponsive|passed out|not responding)\b",
        "strong",
    ),
    _rule(
        "no_pulse",
        "cardiac",
        r"\b(?:no|without a|does not have a|has no|cannot find a|cannot feel a|there is no)\s+"
        r"(?:pulse|heartbeat|heart beat)\b",
        "contextual",
    ),
    _rule(
        "doing_cpr",
        "cardiac",
        r"\b(?:i|we)\s+(?:am\s+|are\s+)?(?:doing|started|giving|performing|need to do|"
        r"need to start|have started)\s+cpr\b|\bshould (?:i|we) (?:do|start|give|begin) cpr\b",
        "personal",
    ),
    # --- stroke --------------------------------------------------------------------------------
    _rule(
        "stroke_now",
        "stroke",
        rf"\b{_SUBJECT}\s+(?:am|is|are|might be|may be|could be)\s+having\s+a\s+stroke\b",
        "personal",
    ),
    _rule(
        "face_droop",
        "stroke",
        r"\b(?:face|mouth|smile)\s+(?:is\s+)?(?:drooping|droopy|sagging|lopsided|twisted|uneven|"
        r"crooked)\b|\b(?:drooping|droopy|lopsided)\s+(?:face|mouth|smile)\b|"
        r"\b(?:face|mouth)\s+droops?\b|\bfacial droop\w*|"
        r"\bone side of (?:my|his|her|the) (?:face|mouth)\s+(?:is\s+)?(?:drooping|droops|numb|fell|"
        r"dropped|went numb|sagging)",
        "contextual",
        chronic=True,
    ),
    _rule(
        "slurred_speech",
        "stroke",
        r"\bslurred speech\b|\bslurring (?:(?:my|his|her|their)\s+)?(?:words|speech)\b|"
        r"\bspeech (?:is|became|has become|suddenly became) slurred\b|"
        r"\b(?:cannot|unable to) (?:speak|talk) (?:properly|clearly|normally|at all)\b|"
        r"\b(?:words|speech) (?:is|are) (?:jumbled|garbled)\b",
        "contextual",
        chronic=True,
    ),
    _rule(
        "one_sided_weakness",
        "stroke",
        r"\b(?:suddenly|all of a sudden)\b[^.?!]{0,40}?\b(?:weak|weakness|numb|numbness|"
        r"paraly[sz]\w*|cannot (?:move|lift|raise|feel))\b|"
        r"\b(?:left|right|one) side of (?:my|his|her) (?:body|face)\s+(?:is\s+|went\s+|feels\s+|"
        r"has gone\s+)?(?:numb|weak|dead|paraly[sz]ed|limp|heavy)\b|"
        r"\bcannot (?:lift|raise|move) (?:my|his|her) (?:left|right) (?:arm|leg|side)\b",
        "contextual",
        chronic=True,
    ),
    _rule(
        "thunderclap_headache",
        "stroke",
        r"\bworst headache of (?:my|his|her) life\b|\bthunderclap headache\b",
        "contextual",
    ),
    _rule(
        "sudden_vision_loss",
        "stroke",
        r"\b(?:sudden(?:ly)?)\s+(?:lost|lose|losing|loss of|went blind|blind)\s*"
        r"(?:vision|sight)?\b",
        "contextual",
    ),
    # --- seizure -------------------------------------------------------------------------------
    _rule(
        "seizure_now",
        "seizure",
        rf"\b{_SUBJECT}\s+(?:am|is|are)\s+(?:having|in the middle of)\s+(?:a\s+)?"
        rf"(?:seizures?|fits?|convulsions?)\b|\b{_SUBJECT}\s+(?:is|are)\s+(?:seizing|convulsing|"
        r"fitting)\b",
        "personal",
        chronic=True,
    ),
    _rule(
        "seizure_long",
        "seizure",
        r"\b(?:seizure|fit|convulsion)\s+(?:has\s+)?(?:lasted|lasting|has been going on|going on|"
        r"is still going)\s+(?:for\s+)?(?:more than\s+|over\s+|longer than\s+)?"
        r"(?:\d+|five|ten|fifteen|twenty)\s+min",
        "strong",
    ),
    # --- bleeding ------------------------------------------------------------------------------
    _rule(
        "bleeding_wont_stop",
        "bleeding",
        r"\b(?:bleeding|blood|it)\s+(?:that\s+|which\s+)?(?:will not|does not|is not|cannot|"
        r"would not|did not)\s+(?:stop|stopping|slow down)\b|"
        r"\b(?:will not|does not|cannot|would not|is not going to)\s+stop\s+bleeding\b|"
        r"\bcannot\s+(?:stop|control)\s+(?:the\s+)?bleeding\b",
        "strong",
    ),
    _rule(
        "bleeding_heavily",
        "bleeding",
        rf"\b{_SUBJECT}\s+(?:am|is|are)\s+(?:bleeding|losing blood)\s+(?:a lot|so much|heavily|"
        r"profusely|badly|everywhere|like crazy|really badly|very heavily|non-?stop|"
        r"out of)",
        "personal",
    ),
    _rule(
        "blood_gushing",
        "bleeding",
        r"\bblood\s+(?:is\s+)?(?:spurting|pouring|gushing|squirting|everywhere)\b",
        "strong",
    ),
    _rule(
        "bleeding_internal_signs",
        "bleeding",
        r"\b(?:vomiting|throwing up|coughing up|puking|spitting up)\s+(?:a lot of\s+|lots of\s+)?"
        r"blood\b|\bsoak(?:ing|ed)?\s+(?:through\s+)?(?:a|one|\d+|two|several)?\s*(?:pads?|towels?)"
        r"\s+(?:an|every|per|in an?)\s+hour\b",
        "contextual",
        chronic=True,
    ),
    # --- breathing ------------------------------------------------------------------------------
    _rule(
        "cannot_breathe",
        "breathing",
        rf"\b{_SUBJECT}\s+(?:cannot|can barely|could not|can hardly|am not able to|is not able to|"
        r"are not able to|is unable to|am unable to|are unable to|am struggling to|"
        r"is struggling to|are struggling to)\s+(?:breathe|breath|get (?:any )?air|"
        r"catch (?:my|his|her) breath)\b",
        "personal",
        chronic=True,
    ),
    _rule(
        "trouble_breathing_now",
        "breathing",
        rf"\b{_SUBJECT}\s+(?:am|is|are)\s+having\s+(?:(?:a lot of|real|serious|severe|a hard time|"
        r"so much|real)\s+)?(?:trouble|difficulty|difficulties|a hard time)\s+breathing\b|"
        rf"\b{_HAS}\s+(?:a\s+)?(?:severe|sudden|extreme|serious|really bad|terrible)\s+"
        r"(?:shortness of breath|breathlessness|difficulty breathing|trouble breathing)\b|"
        rf"\b{_SUBJECT}\s+(?:am|is|are)\s+(?:suddenly|severely|extremely)\s+(?:short of breath|"
        r"breathless)\b",
        "personal",
        chronic=True,
    ),
    _rule(
        "not_breathing",
        "breathing",
        rf"\b{_SUBJECT}\s+(?:is|are|am)\s+(?:not|barely)\s+breathing\b|"
        rf"\b{_SUBJECT}\s+(?:has\s+|have\s+|just\s+)?stopped\s+breathing\b",
        "personal",
    ),
    _rule(
        "choking_now",
        "breathing",
        rf"\b{_SUBJECT}\s+(?:is|am|are)\s+choking\b|\b{_SUBJECT}\s+(?:is|are)\s+turning\s+blue\b",
        "personal",
    ),
    _rule(
        "air_hunger",
        "breathing",
        r"\b(?:gasping|struggling|fighting)\s+for\s+(?:air|breath)\b|"
        r"\b(?:lips|face|skin)\s+(?:is\s+|are\s+)?(?:turning|turned|going|gone|went)\s+blue\b|"
        r"\binhaler\s+is\s+not\s+(?:working|helping)\b",
        "contextual",
    ),
    _rule(
        "asthma_attack_now",
        "breathing",
        rf"\b{_HAS}\s+{_SYMPTOM_ADJECTIVES}asthma attack\b",
        "personal",
        chronic=True,
    ),
    # --- unresponsive ---------------------------------------------------------------------------
    _rule(
        "unresponsive_now",
        "unresponsive",
        rf"\b{_OTHER_PERSON}\s+(?:just\s+|suddenly\s+|has\s+)?(?:collapsed|is unconscious|"
        r"is unresponsive|is not responding|is not waking up|will not wake up|cannot be woken|"
        r"passed out and (?:is not|will not|cannot))\b|"
        rf"\b(?:i|we)\s+(?:just\s+)?(?:collapsed|cannot wake\s+(?:him|her|them|{_OTHER_PERSON}))",
        "personal",
    ),
)

_HYPOTHETICAL = re.compile(
    r"\b(?:if|when|whenever|in case|suppose|supposing|unless|whether|signs? that|"
    r"symptoms? that|how (?:do|can|would|could) (?:i|you|we|one) (?:know|tell)|"
    r"recogni[sz]e (?:that|when|if))\b"
)
_CHRONIC = re.compile(
    r"\b(?:for|since|over)\s+(?:the\s+(?:last|past)\s+)?(?:\d+|a few|few|several|many|some|two|"
    r"three|four|five|six|a couple of|a|one)\s+(?:days?|weeks?|months?|years?)\b|"
    r"\bfor (?:days|weeks|months|years|ages|a long time)\b|"
    r"\bsince (?:childhood|i was|birth|last (?:week|month|year))\b|\bchronic\b|\bon and off\b|"
    r"\boff and on\b|\bevery (?:day|night|week|month|morning|time)\b|\bdaily\b|\bweekly\b|"
    r"\boccasional(?:ly)?\b|\bsometimes\b|\brecurrent\b|\blast (?:week|month|year)\b|"
    r"\b(?:days?|weeks?|months?|years?) ago\b|\bin (?:19|20)\d\d\b|\bused to\b|\bhistory of\b"
)
_ACUTE = re.compile(
    r"\b(?:right now|just now|and now|now (?:i|he|she|my|we|it|they|his|her)|at the moment|"
    r"currently|suddenly|all of a sudden|just (?:started|happened|began|collapsed|now)|"
    r"help me|please help|someone help|hurry|what do i do|what do we do|tonight|this morning|"
    r"this evening|this afternoon|an hour ago|half an hour ago)\b|"
    r"\b(?:since|for the (?:last|past)|for|over the (?:last|past))\s+(?:about\s+)?(?:\d+|a few|few|"
    r"one|two|three|five|ten|fifteen|twenty|thirty|forty|an?|half an)\s+"
    r"(?:min|mins|minutes?|hours?|hrs?|hr)\b|"
    r"\b(?:\d+|a few|few|one|two|three|five|ten|fifteen|twenty|thirty|forty)\s+"
    r"(?:min|mins|minutes?|hours?|hrs?)\s+ago\b|\bhelp\s*!"
)
# Context that makes a possessive personal, minus clinician and study framings.
_OWNED = re.compile(
    r"\b(?:my|me|myself|our|us)\b(?!\s+(?:patients?|research|thesis|study|studies|exam|"
    r"professor|class|course|homework|assignment|paper|teacher|lecture|students?|clinic|"
    r"practice|ward|hospital|team|lab|review|project|question))|"
    rf"\b{_OTHER_PERSON}\b|"
    r"\bi (?:have|am|feel|cannot|just|suddenly|woke|keep|got|took|ate)\b(?!\s+(?:a question|"
    r"a query|been reading|read|heard|seen|a patient|patients|an exam|a test|to know|studying|"
    r"researching|writing|interested|curious|wondering|learning|reading|preparing|a student|"
    r"a medical|a nursing|a nurse|a doctor|a physician|a researcher|trying to (?:understand|"
    r"learn|find)))"
)
_TRIGGER = re.compile(
    r"\b(?:stings?|stung|bee|bees|wasps?|hornets?|peanuts?|nuts?|shellfish|shrimp|allerg\w*|"
    r"epi-?pens?|adrenaline|epinephrine|hives|ate|eating|penicillin|antibiotics?|injection|"
    r"vaccine|contrast|insects?|bitten|food|reaction)\b"
)
_RESEARCH_FRAMING = re.compile(
    r"\b(?:sensitiv\w*|specificity|incidence|prevalen\w*|mortality|morbidity|risk factors?|"
    r"risk of|diagnos\w*|differential|management|managed|guidelines?|treatments?|therap\w*|"
    r"trials?|stud(?:y|ies|ied)|evidence|meta-analys\w*|systematic|review|literature|patients?|"
    r"cohorts?|efficacy|effectiveness|outcomes?|epidemiolog\w*|pathophysiolog\w*|mechanisms?|"
    r"criteria|scores?|scales?|predict\w*|associat\w*|rates?|populations?|defin\w*|classif\w*|"
    r"biomarkers?|signs? of|symptoms? of|causes? of|prognos\w*|survival|compared|comparison|"
    r"versus|vs|children|adults|elderly|women|men|infants|adolescents|percentage|proportion|"
    r"likelihood|odds|frequency|frequent|commonly|typical\w*|explain\w*|research|papers?|"
    r"articles?|physiology|anatomy|pharmacolog\w*|patholog\w*|pathogenesis|a?etiolog\w*|"
    r"assessment|assessed|evaluat\w*|screening|protocols?|algorithms?|recommend\w*|"
    r"first aid|training|education|teach\w*|lecture)\b"
)


@dataclass(frozen=True)
class _EmergencyMatch:
    kind: str
    rule: str


def _clause_before(text: str, start: int) -> str:
    """The text from the start of the sentence holding ``start`` up to ``start``."""
    boundary = max(text.rfind(mark, 0, start) for mark in ".?!;\n")
    return text[boundary + 1 : start]


def _rule_fires(rule: _EmergencyRule, text: str, context: dict[str, bool]) -> bool:
    for match in rule.pattern.finditer(text):
        if rule.hypothetical_suppresses and _HYPOTHETICAL.search(
            _clause_before(text, match.start())
        ):
            continue
        if rule.chronic_suppresses and context["chronic"] and not context["acute"]:
            continue
        if rule.needs_trigger and not context["trigger"]:
            continue
        if rule.strength == "personal":
            return True
        if rule.strength == "strong":
            if context["owned"] or context["acute"] or not context["research"]:
                return True
            continue
        # contextual: a personal or acute context, or a trigger in a question not framed as research
        if context["owned"] or (
            (context["acute"] or context["trigger"]) and not context["research"]
        ):
            return True
    return False


def match_emergency(text: str) -> tuple[str, str] | None:
    """``(kind, rule name)`` of the first emergency rule that fires on ``text``, else ``None``.

    Kinds are tried in the order of :data:`EMERGENCY_KINDS`, so "my son took 30 pills and isn't
    breathing" is an overdose and "my father collapsed and isn't breathing" is cardiac.
    """
    normalised = _normalise(text)
    if not normalised:
        return None
    context = {
        "owned": bool(_OWNED.search(normalised)),
        "acute": bool(_ACUTE.search(normalised)),
        "chronic": bool(_CHRONIC.search(normalised)),
        "trigger": bool(_TRIGGER.search(normalised)),
        "research": bool(_RESEARCH_FRAMING.search(normalised)),
    }
    fired: list[_EmergencyMatch] = [
        _EmergencyMatch(rule.kind, rule.name)
        for rule in _EMERGENCY_RULES
        if _rule_fires(rule, normalised, context)
    ]
    if not fired:
        return None
    best = min(fired, key=lambda m: EMERGENCY_KINDS.index(m.kind))
    return best.kind, best.rule


def detect_emergency(text: str) -> str | None:
    """The emergency kind described in ``text`` (see :data:`EMERGENCY_KINDS`), or ``None``.

    Only present, personal situations count; research and educational questions about the same
    topics do not. English only (see the module docstring).
    """
    found = match_emergency(text)
    return found[0] if found else None


# --------------------------------------------------------------------------------------------
# Triage
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TriageDecision:
    """The route the rules chose for one user turn, with the rules that fired."""

    emergency: bool
    emergency_kind: str | None
    needs_literature: bool
    out_of_scope: bool
    ambiguous: bool
    clarifying_question: str | None
    reasons: tuple[str, ...]


_GREETING_PIECE = re.compile(
    r"(?:hi|hello|hey|hiya|howdy|greetings|good (?:morning|afternoon|evening|day|night)|yo|"
    r"thanks|thank you|thank you (?:so|very) much|thanks (?:a lot|so much)|thx|ty|cheers|"
    r"many thanks|much appreciated|ok|okay|great|cool|nice|perfect|got it|understood|bye|"
    r"goodbye|see you|see ya|how are you|how are you doing|who are you|what are you|"
    r"what can you do|what do you do|help|you there)"
    r"(?:\s+(?:there|again|all|everyone|medgraph|doctor|doc|bot|assistant|you|so much))*"
)
_HELP_ONLY = re.compile(r"(?:please\s+)?help(?:\s+(?:me|us|him|her))?(?:\s+please)?\W*")
_ARITHMETIC = re.compile(r"^[\d\s.,+\-*/x×÷()^%=]+$")
_ARITHMETIC_OPERATOR = re.compile(r"\d\s*[+\-*/x×÷^]\s*\(?\d")
_CALCULATOR_NAME = re.compile(
    r"\b(?:bmi|body mass index|bsa|body surface area|e?gfr|ckd-?epi|cockcroft[- ]gault|"
    r"creatinine clearance|crcl|cha2?ds2?-?vasc|chads2?|has-?bled|curb-?65|crb-?65|"
    r"wells(?: score| criteria)?|qtc|corrected qt|anion gap|corrected calcium)\b"
)
_UNIT_CONVERSION = re.compile(
    r"\bconvert\b[^?]*\d[^?]*\b(?:to|into|in)\b|"
    r"\d+(?:\.\d+)?\s*(?:mg/dl|mmol/l|[µu]mol/l|mg/l|g/dl|g/l|lbs?|pounds|kg|°?f|°?c|fahrenheit|"
    r"celsius|inches|in|cm|ft|feet|stone|st)\s+(?:to|in|into)\s+(?:mg/dl|mmol/l|[µu]mol/l|mg/l|"
    r"g/dl|g/l|lbs?|pounds|kg|°?f|°?c|fahrenheit|celsius|inches|cm|ft|feet|stone|st)\b"
)
_CLINICAL_QUESTION_CUE = re.compile(
    r"\b(?:should|safe|safety|risk of|treat\w*|therap\w*|evidence|stud(?:y|ies)|why|cause\w*|"
    r"recommend\w*|guideline\w*|manage\w*|drugs?|medication\w*|dose|dosing|interpret\w*|"
    r"mean(?:s|ing)?|normal|healthy|worried|worry|dangerous|anticoagul\w*|predict\w*|"
    r"associat\w*|accura\w*|valid\w*|outcomes?|prognos\w*|better|compare\w*)\b"
)
_OUT_OF_SCOPE_CUE = re.compile(
    r"\b(?:poem|poems|poetry|haiku|limerick|sonnet|song|songs|lyrics|rap|story|stories|joke|"
    r"jokes|novel|screenplay|code|coding|python|javascript|java|sql|html|css|programming|"
    r"compile|compiler|regex|recipe|recipes|cook|cooking|bake|baking|weather|forecast|stock|"
    r"stocks|bitcoin|crypto\w*|invest\w*|football|soccer|basketball|baseball|cricket|tennis|"
    r"nba|nfl|movie|movies|film|films|tv show|netflix|actor|actress|celebrit\w*|car|cars|truck|"
    r"trucks|motorbike|tyres?|tires?|travel|flights?|hotels?|vacation|holiday|capital of|"
    r"president|prime minister|elections?|politic\w*|geography|translate|translation|"
    r"homework|equation|physics|astronomy|planets?|galax\w*|dinosaurs?|video games?|gaming|"
    r"minecraft|fortnite|chess|guitar|piano|fashion|makeup|hairstyle|dating|wedding|lottery|"
    r"gambling|casino|real estate|mortgage|taxes|lawyer|visa|immigration|job interview|"
    r"resume|linkedin|twitter|instagram|tiktok|iphone|android|laptop|computer|windows|linux|"
    r"wifi|printer|router|essay|paint|painting|garden|gardening)\b"
)
# Words of a population or public-health study ("active travel associated with ..."): such a
# question is research even when it names no body part or disease.
_RESEARCH_QUESTION = re.compile(
    r"\b(?:associat\w*|correlat\w*|predict\w*|stud(?:y|ies)|trials?|cohorts?|risk|effects? of|"
    r"impact of|outcomes?|prevalence|incidence|populations?|epidemiolog\w*|determinants?|"
    r"socio\w*|income|physical activity|public)\b"
)
_MEDICAL_STEMS = (
    "medic|health|disease|disorder|syndrome|symptom|pain|ache|aching|hurt|sick|illness|injur|"
    "wound|fractur|bone|drug|pill|tablet|dose|dosage|dosing|vaccin|immun|infect|virus|viral|"
    "bacteri|fung|parasit|cancer|tumo|oncolog|carcinom|lymphom|leuk|diabet|insulin|glucose|"
    "blood|heart|cardi|coronar|arter|venous|vascul|lung|pulmon|respir|breath|asthma|copd|"
    "kidney|renal|nephr|liver|hepat|gastr|intestin|bowel|colon|stomach|brain|neur|stroke|"
    "dementia|alzheimer|parkinson|epilep|seizure|migraine|headache|mental|psych|depress|anxi|"
    "schizo|bipolar|autis|adhd|sleep|insomnia|diet|nutri|vitamin|obes|weight|pregnan|birth|"
    "neonat|pediatr|paediatr|patient|clinic|hospital|doctor|physician|nurs|surg|an?esthe|"
    "therap|treat|diagnos|prognos|screening|scan|radiolog|radiograph|imaging|lesion|biopsy|"
    "patholog|histolog|genet|genom|protein|enzyme|hormon|thyroid|steroid|antibiot|antibod|"
    "opioid|analges|aspirin|ibuprofen|paracetamol|acetaminophen|metformin|statin|warfarin|"
    "derma|eczema|psoria|acne|allerg|fever|cough|influenza|covid|sars|hiv|tubercul|malaria|"
    "ophthalm|retin|vision|hearing|dent|tooth|teeth|muscle|arthr|tendon|ligament|spine|spinal|"
    "hypert|hypot|cholesterol|lipid|smok|alcohol|addict|mortality|morbidity|survival|trial|"
    "cohort|epidemi|prevalen|incidence|clinical|pharma|toxic|poison|overdos|suicid|emergency|"
    "intensive care|anatom|physiolog|biolog|biochem|molecul|tissue|menstru|menopaus|"
    "contracept|fertil|sperm|ovar|uter|prostat|breast|cervi|sexual|abortion|miscarriage|"
    "lactat|breastfeed|urin|bladder|stool|f(?:a)?eces|constipat|diarrh|nause|vomit|dizz|"
    "fatigue|faint|swell|swollen|itch|bleed|bruis|transplant|dialysis|chemo|radiotherap|"
    "placebo|side effect|adverse|contraindicat|prescri|pharmac|supplement|herbal|exercis|"
    "fitness|wellness|calori|sodium|potassium|calcium|an(?:a)?emi|platelet|h(?:a)?emo|plasma|"
    "serum|creatinine|troponin|oxygen|ventilat|intubat|resuscit|sepsis|septic|triage|veterin|"
    "obstet|gyn|urolog|endocrin|geriatr|ortho|podiat|chiropract|physio|rehab|palliat|hospice|"
    "concussion|trauma|abuse|nodul|cyst|polyp|ulcer|hernia|appendic|gallbladder|pancrea|"
    "spleen|lymph|sinus|tonsil|throat|chest|abdom|pelvi|knee|shoulder|wrist|ankle|elbow|"
    "cell|mri|x-ray|xray|ultrasound|ecg|ekg|eeg|mutation|receptor|antigen|tumour|cardio|"
    "fracture|infarct|emboli|thromb|stenosis|sclerosis|dystroph|palsy|hepatitis|mening|"
    "pneumon|bronch|osteo|arthritis|gout|lupus|celiac|coeliac|crohn|colitis|ibs|gerd|reflux|"
    "ulcer|hemorrh|haemorrh|aneurysm|arrhythm|fibrillat|angina|dyspn|edema|oedema|jaundice|"
    "vaccination|bmi|egfr|gfr|qtc"
)
_MEDICAL_TERM = re.compile(
    rf"\b(?:{_MEDICAL_STEMS})\w*|"
    r"\b(?:ill|ct|pet|eye|eyes|ear|ears|nose|mouth|skin|rash|flu|cold|hip|neck|gene|genes|"
    r"dna|rna|organ|organs|vein|veins|oral|iron|std|sti|stds|stis|aids|tired|burn|burns|scar|"
    r"scars|pulse|shock|icu|cpr|otc|mg|mcg|ml|mmol|doc|meds|gp|er|ed|sore|lump|mole|wart|"
    r"acid|sugar|fat|stress|mood|grief|drink|drinking|drunk|weed|cannabis|marijuana|cocaine|"
    r"heroin|nicotine|vape|vaping|caffeine|coffee|food|eating|fasting|baby|babies|sex|"
    r"period|periods|hair|nail|nails|sweat|sweating|cramp|cramps|fit|cut|bite|sting)\b"
)


def _words(text: str) -> frozenset[str]:
    """The whitespace-separated words of ``text`` (keeps long word lists readable)."""
    return frozenset(text.split())


_STOPWORDS = _words(
    """a an the and or but so if then than that this these those it its it's they them their
    there here what which who whom whose when where why how is are was were be been being am do
    does did done doing have has had having can could will would shall should may might must
    i me my mine myself we us our you your yours he him his she her hers of in on at to for from
    with without about into onto over under after before between through during by as up down
    out off again further once all any both each few more most other some such no nor not only
    own same too very just also now please tell know explain say said think thing things
    anything something stuff really ok okay yes well hi hello hey thanks thank let lets give
    get got want need like go going one ones kind type sort bit lot lots quite maybe perhaps
    anyone someone somebody anybody else instead still even ever much many often long"""
)
_GENERIC_WORDS = _words(
    """safe safety safely dangerous danger harmful ok fine normal bad good better best worse
    worst dose doses dosage dosing amount amounts side effect effects risk risks interaction
    interactions interact take taking took taken use using used uses work works working worked
    help helps helpful stop stopping start starting continue need needed recommended recommend
    alternative alternatives more less about mean means meaning serious worry worried concern
    symptom symptoms sign signs treatment treatments treat therapy cure cause causes effective
    possible true right wrong question questions answer mg ml g kg mcg unit units daily day days
    week weeks month months year years time times twice per am pm morning night before after
    medicine medicines medication medications meds drug drugs pill pills tablet tablets
    option options choice choices limit maximum max minimum min usual typical common okay
    enough high low level levels number numbers value values result results test tests
    together same similar different difference instead way ways"""
)
_POPULATION_WORDS = _words(
    """children child kids kid adults adult elderly older women woman men man infants infant
    babies baby teens teenagers teenager seniors people patients patient someone"""
)
_FOLLOW_UP_OPENING = re.compile(
    r"^(?:and\s+|so\s+|but\s+|ok\s+|okay\s+|also\s+)?(?:what|how) about\b"
)
_PRONOUN_OPENING = re.compile(
    r"^(?:and\s+|so\s+|but\s+|ok\s+|okay\s+|also\s+)?(?:(?:is|are|does|do|can|could|will|would|"
    r"should|was|were|has|have|did)\s+(?P<p1>it|this|that|they|these|those|them)\b|"
    r"(?:what|how|why|when)\s+(?:about|is|are|does|do|did|should|can)\s+"
    r"(?P<p2>it|this|that|they|them|these|those)\b|"
    r"(?P<p3>it|this|that|they|these|those)\s+(?:does|do|can|could|will|would|should|has|have|"
    r"causes?|makes?|hurts?|helps?|works?|interacts?)\b)"
)
# "Is it normal to ...", "Is it safe for ... to": the pronoun is a placeholder, not a reference.
_DUMMY_IT = re.compile(
    r"\bit\s+(?:is\s+)?(?:\w+\s+)?(?:normal|safe|ok|okay|common|possible|true|bad|dangerous|"
    r"necessary|advisable|wise|recommended|healthy|better|worse|likely|unusual|rare|harmful|"
    r"fine|good|worth|too late|too early|legal)\s+(?:to|for|that|if|when|after|before|during)\b"
)
_AMBIGUOUS_ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "ms": ("multiple sclerosis", "mitral stenosis", "morphine sulfate"),
    "pe": ("pulmonary embolism", "pleural effusion", "physical examination"),
    "ra": ("rheumatoid arthritis", "right atrium", "room air"),
    "cp": ("cerebral palsy", "chest pain"),
    "ed": ("erectile dysfunction", "emergency department", "eating disorder"),
    "pt": ("physical therapy", "prothrombin time"),
    "ca": ("cancer", "calcium"),
    "pid": ("pelvic inflammatory disease", "primary immunodeficiency"),
    "pcp": ("Pneumocystis pneumonia", "phencyclidine", "primary care physician"),
    "dm": ("diabetes mellitus", "dermatomyositis"),
    "bpd": ("borderline personality disorder", "bronchopulmonary dysplasia"),
    "od": ("overdose", "right eye (oculus dexter)", "once daily"),
}
# Only upper-case in the original text counts for these (they are also common English words).
_UPPER_CASE_ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "AS": ("aortic stenosis", "ankylosing spondylitis"),
    "AD": ("Alzheimer's disease", "atopic dermatitis"),
}
_TOKEN = re.compile(r"[a-z0-9][a-z0-9'\-]*")
# Function words of Spanish, German, French, Portuguese, Italian and Dutch that are not English.
_FOREIGN_STOPWORDS = _words(
    """el la los las del que y en un una es est por para con mi muy mucho tengo estoy puedo
    duele ich habe und der das ist nicht mein meine ein eine mit zu bin kann je suis mon ma mes
    le les et une des pas avec pour j'ai eu tenho meu minha não com uma io ho il sono non mio
    het een ik niet heb"""
)
_ENGLISH_MARKERS = _words(
    "the is are what how i my of and to in a does do can have has with for it this"
)


def _content_tokens(normalised: str) -> list[str]:
    """Words of ``normalised`` that can name a subject (not function or generic words)."""
    return [
        token
        for token in _TOKEN.findall(normalised)
        if token not in _STOPWORDS
        and token not in _GENERIC_WORDS
        and token not in _POPULATION_WORDS
        and not re.fullmatch(r"[\d.,'\-]+", token)
    ]


def _is_greeting(normalised: str) -> bool:
    pieces = [p.strip() for p in re.split(r"[,.!?;:]+", normalised) if p.strip()]
    return bool(pieces) and all(_GREETING_PIECE.fullmatch(p) for p in pieces)


def _is_arithmetic(normalised: str) -> bool:
    stripped = re.sub(
        r"^(?:please\s+)?(?:what is|what's|calculate|compute|how much is|work out|evaluate)\s+",
        "",
        normalised,
    ).rstrip("?= ")
    return bool(_ARITHMETIC.fullmatch(stripped)) and bool(_ARITHMETIC_OPERATOR.search(stripped))


def _is_calculator_request(normalised: str) -> bool:
    if _is_arithmetic(normalised):
        return True
    wants_calculation = bool(
        _CALCULATOR_NAME.search(normalised) or _UNIT_CONVERSION.search(normalised)
    )
    return (
        wants_calculation
        and bool(re.search(r"\d", normalised))
        and not _CLINICAL_QUESTION_CUE.search(normalised)
    )


def _looks_non_english(question: str, normalised: str) -> bool:
    letters = [c for c in question if c.isalpha()]
    if letters and sum(1 for c in letters if not c.isascii()) / len(letters) > 0.3:
        return True
    words = _TOKEN.findall(normalised)
    foreign = sum(1 for w in words if w in _FOREIGN_STOPWORDS)
    english = sum(1 for w in words if w in _ENGLISH_MARKERS)
    return foreign >= 2 and foreign > english


def _ambiguous_abbreviation(question: str, normalised: str) -> tuple[str, tuple[str, ...]] | None:
    """An abbreviation with unrelated readings that is the question's only subject."""
    content = _content_tokens(normalised)
    for token in content:
        if token in _AMBIGUOUS_ABBREVIATIONS:
            others = [t for t in content if t != token]
            if not others:
                return token.upper(), _AMBIGUOUS_ABBREVIATIONS[token]
    for abbreviation, readings in _UPPER_CASE_ABBREVIATIONS.items():
        if re.search(rf"\b{abbreviation}\b", question):
            others = [t for t in content if t != abbreviation.lower()]
            if not others:
                return abbreviation, readings
    return None


def _unresolved_pronoun(normalised: str) -> str | None:
    """The pronoun a short question leans on ("does it cause cancer?"), if any."""
    tokens = _TOKEN.findall(normalised)
    if len(tokens) > 10 or _DUMMY_IT.search(normalised):
        return None
    match = _PRONOUN_OPENING.match(normalised)
    if not match:
        return None
    return match.group("p1") or match.group("p2") or match.group("p3")


def _history_has_subject(history: Sequence[str]) -> bool:
    return any(_content_tokens(_normalise(turn)) for turn in history)


def _history_resolves(history: Sequence[str], readings: tuple[str, ...]) -> bool:
    joined = " ".join(_normalise(turn) for turn in history)
    return any(reading.lower().split(" (")[0] in joined for reading in readings)


def _decision(
    *,
    reasons: Sequence[str],
    needs_literature: bool = False,
    emergency_kind: str | None = None,
    out_of_scope: bool = False,
    clarifying_question: str | None = None,
) -> TriageDecision:
    return TriageDecision(
        emergency=emergency_kind is not None,
        emergency_kind=emergency_kind,
        needs_literature=needs_literature,
        out_of_scope=out_of_scope,
        ambiguous=clarifying_question is not None,
        clarifying_question=clarifying_question,
        reasons=tuple(reasons),
    )


def _subject_question(normalised: str) -> str:
    if re.search(r"\bdos(?:e|es|age|ing)\b", normalised):
        return "Which medicine's dose are you asking about, and for whom (adult or child)?"
    if re.search(r"\b(?:side effects?|interactions?|safe|safety)\b", normalised):
        return "Which medicine or treatment is your question about?"
    return "Which medicine, condition, test or treatment is your question about?"


def triage_by_rules(
    question: str,
    *,
    has_images: bool,
    history: Sequence[str] = (),
    image_mode: str | None = None,
) -> TriageDecision:
    """Route one user turn by rules: emergency, greeting, out of scope, calculator, ambiguous, or
    a question for the literature.

    ``history`` holds the earlier user turns of the conversation (oldest first); it can resolve
    ambiguity ("what about the dose?" after a question naming a drug). Only the current turn is
    searched for a new emergency; when the last earlier turn was one, a bare follow-up ("help",
    "what should I do now?") gets the emergency route again. With ``has_images`` the attached
    image is the subject, so "what does this show?" is not ambiguous. ``image_mode`` says what
    is attached (``image``, ``views``, ``series`` or ``comparison``, see
    :func:`medgraph.graphs.image_reading.image_mode`) and is recorded in the reasons as
    ``image_is_subject:<mode>``.
    """
    subject = f"image_is_subject:{image_mode}" if image_mode else "image_is_subject"
    normalised = _normalise(question)
    reasons: list[str] = []
    if not normalised:
        if has_images:
            return _decision(reasons=[subject, "literature"], needs_literature=True)
        return _decision(
            reasons=["empty_question"],
            clarifying_question="What would you like to ask? Please type your question.",
        )
    if _looks_non_english(question, normalised):
        reasons.append("language:not_english_suspected")

    emergency = match_emergency(question)
    if emergency is not None:
        kind, rule = emergency
        return _decision(
            reasons=[*reasons, f"emergency:{kind}", f"rule:{rule}"], emergency_kind=kind
        )

    # A bare follow-up ("help", "what do I do?") right after an emergency turn gets the emergency
    # answer again instead of a clarifying question; a new, clear question is routed normally.
    previous = match_emergency(history[-1]) if history else None
    if previous is not None and (
        _HELP_ONLY.fullmatch(normalised) or _clarify(question, normalised, (), [])
    ):
        kind, rule = previous
        return _decision(
            reasons=[*reasons, f"emergency:{kind}", f"rule:{rule}", "emergency_in_previous_turn"],
            emergency_kind=kind,
        )

    if _is_greeting(normalised):
        return _decision(reasons=[*reasons, "greeting"])

    if _is_calculator_request(normalised):
        label = "calculator:arithmetic" if _is_arithmetic(normalised) else "calculator"
        return _decision(reasons=[*reasons, label])

    if (
        _OUT_OF_SCOPE_CUE.search(normalised)
        and not _MEDICAL_TERM.search(normalised)
        and not _RESEARCH_QUESTION.search(normalised)
    ):
        return _decision(reasons=[*reasons, "out_of_scope"], out_of_scope=True)

    if has_images:
        reasons.append(subject)
    else:
        clarifying = _clarify(question, normalised, history, reasons)
        if clarifying is not None:
            return _decision(reasons=reasons, clarifying_question=clarifying)

    reasons.append("literature")
    return _decision(reasons=reasons, needs_literature=True)


def _clarify(
    question: str, normalised: str, history: Sequence[str], reasons: list[str]
) -> str | None:
    """The clarifying question for an ambiguous turn (appending the reasons), or ``None``."""
    abbreviation = _ambiguous_abbreviation(question, normalised)
    if abbreviation is not None:
        short, readings = abbreviation
        if _history_resolves(history, readings):
            reasons.append(f"resolved_by_history:abbreviation:{short.lower()}")
        else:
            reasons.append(f"ambiguous:abbreviation:{short.lower()}")
            listed = ", ".join(readings[:-1]) + f" or {readings[-1]}"
            return f'By "{short}", do you mean {listed}?'

    no_subject = not _content_tokens(normalised)
    follow_up = bool(_FOLLOW_UP_OPENING.match(normalised)) and not [
        t for t in _content_tokens(normalised) if t not in _POPULATION_WORDS
    ]
    pronoun = _unresolved_pronoun(normalised)
    if not (no_subject or follow_up or pronoun):
        return None
    if _history_has_subject(history):
        reasons.append("resolved_by_history")
        return None
    if pronoun and not no_subject:
        reasons.append("ambiguous:pronoun")
        return f'What does "{pronoun}" refer to — which medicine, condition or test do you mean?'
    reasons.append("ambiguous:no_subject")
    return _subject_question(normalised)
