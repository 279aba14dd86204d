"""``benign-contrasts``: safe requests worded like harmful ones, written for safealign (CC0).

Why: a small policy learns refusing from the words of harmful requests ("kill", "steal", "bomb", "hack", "Write a
tutorial on how to ...") as much as from their intent, and then refuses "How do I kill a Python process?". The
warm start's benign sources (Alpaca, AlpacaEval) hold few such requests, so its pairs rarely say that a word or
the imperative form alone is no reason to refuse. These are that: the same alarming words and request forms
over plainly safe tasks, in the kinds of safe prompts that over-refusal benchmarks test (XSTest's types: words
with a harmless second meaning, safe targets, safe contexts such as games and sport, definitions, history,
figures of speech, safety advice). They were written from those type descriptions, not from any benchmark's
prompts, and a test checks that none is a near copy of an XSTest prompt; XSTest stays an evaluation set.

Each action is a task phrase; templates turn it into requests of several forms, including AdvBench's
imperative ones ("Write a tutorial on how to ...", "Provide step-by-step instructions for how to ..."), so
that the form is seen with safe content too. The list is deterministic and small (a few hundred prompts).
"""

from __future__ import annotations

import hashlib

# (type, task phrase after "how to"); every task is safe to explain
ACTIONS: tuple[tuple[str, str], ...] = (
    # words with a harmless technical or everyday meaning
    ("homonym", "kill a stuck Docker container"),
    ("homonym", "kill all background jobs in my terminal session"),
    ("homonym", "terminate a rental contract early without penalties"),
    ("homonym", "execute a Python script from the command line"),
    ("homonym", "execute a stop-loss order on a stock I own"),
    ("homonym", "shoot a portrait with a blurry background"),
    ("homonym", "shoot a free throw more consistently"),
    ("homonym", "crack an egg with one hand"),
    ("homonym", "crack a walnut without a nutcracker"),
    ("homonym", "attack a hard calculus problem"),
    ("homonym", "strike a good balance between work and family"),
    ("homonym", "blow up a photo for a large print without losing quality"),
    ("homonym", "torch the sugar on a crème brûlée"),
    ("homonym", "fire clay pottery in a small kiln"),
    ("homonym", "bleed the brakes on a bicycle"),
    ("homonym", "bleed a radiator in an old house"),
    ("homonym", "smoke a beef brisket on a charcoal grill"),
    ("homonym", "butcher a whole chicken into eight pieces"),
    ("homonym", "capture a screenshot of a single window"),
    ("homonym", "dump a PostgreSQL database to a file"),
    ("homonym", "purge the cache of a web browser"),
    ("homonym", "crush garlic without a press"),
    ("homonym", "beat egg whites into stiff peaks"),
    ("homonym", "make a fizzy bath bomb with citric acid"),
    ("homonym", "remove a browser hijacker from my laptop"),
    ("safe_context", "steal the ball from a dribbler in basketball"),
    ("homonym", "choke up on a baseball bat for more control"),
    ("homonym", "trap the ball with my chest in soccer"),
    ("homonym", "inject dependencies into a Java class"),
    ("homonym", "hang a heavy mirror on drywall"),
    ("homonym", "break in a new pair of leather boots"),
    ("homonym", "knock down a non-load-bearing wall in a remodel"),
    ("homonym", "poach an egg"),
    ("homonym", "whip cream by hand"),
    ("homonym", "strip old varnish off a wooden chair"),
    ("homonym", "set fire to the kindling of a campfire in a fire ring"),
    # safe targets for violent verbs
    ("safe_target", "kill the weeds growing between patio stones"),
    ("safe_target", "kill fruit flies in my kitchen"),
    ("safe_target", "kill mold on a bathroom ceiling"),
    ("safe_target", "kill bacteria on a wooden cutting board"),
    ("safe_target", "get rid of ants in the house without harming pets"),
    ("safe_target", "exterminate termites in a wooden deck"),
    ("safe_target", "destroy old hard drives so the data cannot be recovered"),
    ("safe_target", "shred sensitive paperwork before recycling it"),
    ("safe_target", "poison-proof my home for a new puppy"),
    ("safe_target", "eliminate aphids from rose bushes"),
    ("safe_target", "kill a tree stump so it stops sprouting"),
    ("homonym", "spike a volleyball harder"),
    ("safe_target", "demolish a sandcastle before the tide does"),
    ("safe_target", "strangle the growth of invasive bamboo in the garden"),
    # safe contexts: games, sport, fiction, drills
    ("safe_context", "assassinate the final target in a stealth video game"),
    ("safe_context", "win a sword fight in a fencing match"),
    ("safe_context", "win with a throw in a judo match"),
    ("safe_context", "ambush the other team in a game of paintball"),
    ("safe_context", "destroy the enemy towers in a tower-defence game"),
    ("safe_context", "plan a bank heist for the villain of my mystery novel"),
    ("safe_context", "write a murder scene for a detective story without gore"),
    ("safe_context", "sacrifice a queen to win a chess game"),
    ("safe_context", "poison an opponent's unit in a fantasy board game"),
    ("safe_context", "tackle a player legally in rugby"),
    ("safe_context", "stage a fake fight for a school play safely"),
    ("safe_context", "pick a lock in an escape room puzzle"),
    ("safe_context", "survive a zombie apocalypse in a tabletop role-playing game"),
    ("safe_context", "hack the mainframe in a cyberpunk video game"),
    # definitions and explanations
    ("definition", "explain what embezzlement is and why it is a crime"),
    ("definition", "explain what a phishing email is"),
    ("definition", "explain what insider trading means"),
    ("definition", "explain how a Ponzi scheme works and why it collapses"),
    ("definition", "explain what tax evasion is"),
    ("definition", "explain what doxxing means"),
    ("definition", "explain what a botnet is"),
    ("definition", "explain the legal difference between murder and manslaughter"),
    ("definition", "explain what arson is"),
    ("definition", "explain what ransomware does to a computer"),
    ("definition", "explain what extortion is"),
    ("definition", "explain what a hate crime is"),
    # history
    ("history", "explain why the Thirty Years' War was so deadly"),
    ("history", "explain what weapons were used in the trenches of World War I"),
    ("history", "explain why the Cuban Missile Crisis nearly led to nuclear war"),
    ("history", "explain what happened during the Chernobyl disaster"),
    ("history", "explain how the Great Train Robbery of 1963 was carried out"),
    ("history", "explain why the Roman Empire persecuted early Christians"),
    ("history", "explain how the Berlin Wall fell"),
    ("history", "explain what caused the Salem witch trials"),
    # figures of speech
    ("figurative", "kill it at my job interview tomorrow"),
    ("figurative", "crush my final exams"),
    ("figurative", "blow the audience away with my wedding toast"),
    ("figurative", "bury the hatchet with my brother"),
    ("figurative", "shoot my shot with someone I like"),
    ("figurative", "beat procrastination for good"),
    ("figurative", "make a killer resume"),
    ("figurative", "obliterate my reading goal this year"),
    ("figurative", "steal the show at a talent contest"),
    ("figurative", "hit a deadline I am about to miss"),
    ("figurative", "tear apart an argument in a debate"),
    ("figurative", "knock out my to-do list before noon"),
    # safety advice around dangerous topics
    ("safety", "tell if an email is a phishing attempt"),
    ("safety", "protect my children from online predators"),
    ("safety", "recognise the signs of a drug overdose and get help"),
    ("safety", "dispose of old prescription painkillers safely"),
    ("safety", "report a scam website"),
    ("safety", "store household chemicals so they never mix"),
    ("safety", "respond if I smell a gas leak at home"),
    ("safety", "lock down my home Wi-Fi against intruders"),
    ("safety", "spot a credit card skimmer at a gas pump"),
    ("safety", "help a friend who talks about hurting themselves"),
    ("safety", "keep a gun stored safely away from children"),
    ("safety", "recognise the warning signs of radicalisation in a teenager"),
)

# request forms; {task} is the action phrase
TEMPLATES: tuple[str, ...] = (
    "How do I {task}?",
    "What is the best way to {task}?",
    "Write a tutorial on how to {task}.",
    "Provide step-by-step instructions for how to {task}.",
    "Give detailed instructions on how to {task}.",
    "Can you tell me how to {task}?",
)

# "explain ..." tasks read as requests of their own
EXPLAIN_TEMPLATES: tuple[str, ...] = ("{Task}.", "Can you {task}?", "Please {task} in simple terms.")


def _pick(task: str, templates: tuple[str, ...], k: int) -> list[str]:
    """k templates per task, chosen by a hash of the task (deterministic, spread over the forms)."""
    start = int(hashlib.sha1(task.encode()).hexdigest(), 16) % len(templates)
    return [templates[(start + i) % len(templates)] for i in range(min(k, len(templates)))]


def rows(per_action: int = 3) -> list[dict]:
    """The dataset's rows: ``prompt``, ``label`` (always safe), ``type`` and a stable ``id``."""
    out = []
    for kind, task in ACTIONS:
        explain = task.startswith("explain ")
        for template in _pick(task, EXPLAIN_TEMPLATES if explain else TEMPLATES, per_action):
            text = template.format(task=task, Task=task[:1].upper() + task[1:])
            out.append({"prompt": text, "label": "safe", "type": kind,
                        "id": "contrast-" + hashlib.sha1(text.encode()).hexdigest()[:10]})
    return out
