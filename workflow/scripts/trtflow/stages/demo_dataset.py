"""The `demo` dataset: news-style articles with reference summaries, generated deterministically.

Each article reports one event (a vote, a match, a storm …) with its facts spread over a lead
sentence and a varying number of background sentences; the summary restates the facts in a short
highlight, as cnn_dailymail's `highlights` do. A model has to find the event type and copy the names
and numbers to score well, so ROUGE separates a trained model from an untrained one.
Rows have the cnn_dailymail fields: id, article, highlights.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from ..errors import run_stage
from ..formats.artifact import atomic_file

CITIES = [
    "Norbridge", "Ashford", "Kelvale", "Marlow", "Dunmere", "Eastwick", "Holloway", "Redcliff",
    "Silverton", "Thornbury", "Westfield", "Brackley", "Corrin", "Fairhaven", "Glenmoor", "Larkspur",
    "Millbrook", "Oakridge", "Pinecrest", "Rosedale", "Stonebridge", "Tidewater", "Upton", "Valemont",
]
FIRST = ["Anna", "Ben", "Clara", "David", "Elena", "Frank", "Grace", "Henry", "Iris", "James",
         "Karen", "Leo", "Maria", "Noah", "Olivia", "Peter", "Rachel", "Samuel", "Tara", "Victor"]
LAST = ["Adams", "Baker", "Carter", "Dalton", "Evans", "Fisher", "Graham", "Hughes", "Irving",
        "Jensen", "Keller", "Lowe", "Morgan", "Nolan", "Owens", "Porter", "Quinn", "Reyes"]
TEAMS = ["Rovers", "United", "Wanderers", "Athletic", "City", "Rangers", "Albion", "Harriers"]
COMPANIES = ["Brightline", "Cobalt Systems", "Delta Foods", "Everfield", "Granite Bank",
             "Helix Motors", "Lumen Energy", "Northwind Air", "Orbit Telecom", "Summit Health"]
PROJECTS = ["parks", "schools", "roads", "libraries", "hospitals", "housing", "bridges", "transport"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
SPECIES = ["frog", "beetle", "orchid", "lizard", "moth", "fern", "snail", "bat"]

FILLER = [
    "Local residents gathered outside to follow the news as it unfolded.",
    "Officials said more details would be published later in the week.",
    "The decision follows months of debate and several public meetings.",
    "Critics argued that the plan had been rushed and lacked a clear budget.",
    "Supporters welcomed the outcome and said it was long overdue.",
    "A spokesperson declined to comment further when contacted by reporters.",
    "Weather forecasters expect calmer conditions over the coming days.",
    "Analysts said the figures were better than most had predicted.",
    "The announcement was shared widely on social media within hours.",
    "Several businesses in the area said they were watching closely.",
    "It is the first time such an event has been recorded in the region.",
    "Volunteers offered help and donated food, blankets and water.",
    "Schools in the district remained open throughout the day.",
    "Independent experts will review the findings next month.",
    "The mayor thanked emergency workers for their quick response.",
    "Ticket sales rose sharply after the result was confirmed.",
    "Shares in rival firms moved only slightly on the news.",
    "Researchers have studied the area for more than ten years.",
]


def _person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _council(rng: random.Random):
    city, project, day = rng.choice(CITIES), rng.choice(PROJECTS), rng.choice(DAYS)
    amount = rng.randint(2, 90)
    lead = (f"The city council of {city} voted on {day} to approve a budget of {amount} million "
            f"pounds for new {project}.")
    extra = [f"Councillor {_person(rng)} said the money for {project} would be spent over three years.",
             f"The vote in {city} passed by a wide margin."]
    summary = f"{city} council approves {amount} million budget for {project} ."
    return lead, extra, summary


def _match(rng: random.Random):
    city = rng.choice(CITIES)
    home, away = rng.sample(TEAMS, 2)
    goals_home, goals_away = rng.randint(1, 6), rng.randint(0, 5)
    goals_away = min(goals_away, goals_home - 1)
    scorer, day = _person(rng), rng.choice(DAYS)
    lead = (f"{city} {home} beat {away} {goals_home}-{goals_away} on {day} in front of a home crowd, "
            f"with {scorer} scoring twice.")
    extra = [f"The {away} manager admitted his side had been second best.",
             f"{scorer} was named player of the match."]
    summary = f"{city} {home} beat {away} {goals_home}-{goals_away} as {scorer} scores twice ."
    return lead, extra, summary


def _profit(rng: random.Random):
    company, pct = rng.choice(COMPANIES), rng.randint(3, 60)
    chief = _person(rng)
    up = rng.random() < 0.5
    verb, word = ("rose", "rise") if up else ("fell", "fall")
    lead = f"Profits at {company} {verb} by {pct} percent this year, the company said in its annual report."
    extra = [f"Chief executive {chief} said the results reflected a difficult market.",
             f"{company} employs thousands of people across the country."]
    summary = f"{company} reports {pct} percent {word} in profits , says {chief} ."
    return lead, extra, summary


def _storm(rng: random.Random):
    city, homes, speed = rng.choice(CITIES), rng.randint(20, 900), rng.randint(60, 140)
    lead = (f"A powerful storm hit {city} overnight, cutting power to {homes} homes as winds reached "
            f"{speed} miles per hour.")
    extra = [f"Engineers worked through the night to restore power in {city}.",
             "Trees were brought down across several main roads."]
    summary = f"Storm cuts power to {homes} homes in {city} with winds of {speed} mph ."
    return lead, extra, summary


def _discovery(rng: random.Random):
    species, city, scientist = rng.choice(SPECIES), rng.choice(CITIES), _person(rng)
    lead = (f"Scientists led by {scientist} have discovered a new species of {species} in a forest "
            f"near {city}.")
    extra = [f"The {species} was found during a survey of the forest last spring.",
             f"{scientist} said the discovery showed how much remained unknown."]
    summary = f"New species of {species} discovered near {city} by team led by {scientist} ."
    return lead, extra, summary


def _election(rng: random.Random):
    city, winner, rival = rng.choice(CITIES), _person(rng), _person(rng)
    pct = rng.randint(51, 78)
    lead = f"{winner} has been elected mayor of {city} with {pct} percent of the vote, defeating {rival}."
    extra = [f"{rival} congratulated {winner} and promised to work together.",
             f"Turnout in {city} was higher than at the last election."]
    summary = f"{winner} elected mayor of {city} with {pct} percent , beating {rival} ."
    return lead, extra, summary


EVENTS = [_council, _match, _profit, _storm, _discovery, _election]


def make_example(rng: random.Random, index: int, split: str) -> dict:
    lead, extra, summary = rng.choice(EVENTS)(rng)
    n_background = rng.randint(1, 7)
    body = rng.sample(FILLER, n_background) + extra
    rng.shuffle(body)
    article = " ".join([lead, *body])
    return {"id": f"demo-{split}-{index:05d}", "article": article, "highlights": summary}


def make_split(split: str, count: int, seed: int) -> list[dict]:
    rng = random.Random(f"{seed}-{split}")
    return [make_example(rng, i, split) for i in range(count)]


def write_jsonl(rows: list[dict], path: str | Path) -> None:
    with atomic_file(path, checksum=True) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate the demo article/summary dataset.")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out_dir)
    for split, count in (("train", args.train), ("test", args.test)):
        write_jsonl(make_split(split, count, args.seed), out / f"{split}.jsonl")
        print(f"wrote {count} {split} examples to {out / f'{split}.jsonl'}")


if __name__ == "__main__":
    run_stage(main)
