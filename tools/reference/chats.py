#!/usr/bin/env python3
"""Deterministic chats for the demo model: reasoning in <think> before every answer, and tool calls for three
simple tools (get_weather, calculator, convert_units) with their results and the follow-up answers.

The chats are written as JSON lines, one conversation a line, in the engine's terms:
  {"chat": i, "tools": [{"name", "description", "parameters"}...],
   "messages": [{"role": "system"|"user"|"assistant"|"tool", "content": str,
                 "tool_calls": [{"name", "arguments": JSON text}] (assistant), "name": str (tool)}]}
The last message is always an assistant turn written as the model should write it: "<think>\\n...\\n</think>\\n"
then the answer, or then the tool calls. Earlier assistant turns are written as an OpenAI client sends them back
(no reasoning, content "" beside tool calls), so the model only learns to produce the last one (the trainer
masks the others). The engine's ChatTemplate renders the lines into the training text
(io.lightmesh.engine.chat.ChatCorpusRenderer), so training sees exactly what `serve` will show the model.

Kept learnable for a ~6M-parameter model: short, regular reasoning, tool arguments copied from the user's words,
answers that quote the tool result. Everything is ASCII. The same --seed gives the same file byte for byte.

Usage: python3 chats.py --out chats.jsonl [--tool-chats N] [--plain-chats N] [--seed S]
"""
import argparse
import json
import math
import random

WEATHER = {"name": "get_weather", "description": "Current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CALCULATOR = {"name": "calculator", "description": "Evaluate an arithmetic expression",
              "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                             "required": ["expression"]}}
UNITS = {"name": "convert_units", "description": "Convert a value from one unit to another",
         "parameters": {"type": "object", "properties": {"value": {"type": "number"}, "from_unit": {"type": "string"},
                                                         "to_unit": {"type": "string"}},
                        "required": ["value", "from_unit", "to_unit"]}}
TOOLS = [WEATHER, CALCULATOR, UNITS]

CITIES = ["Paris", "London", "Berlin", "Madrid", "Rome", "Lisbon", "Vienna", "Prague", "Warsaw", "Dublin",
          "Oslo", "Stockholm", "Helsinki", "Copenhagen", "Amsterdam", "Brussels", "Zurich", "Geneva", "Athens",
          "Istanbul", "Cairo", "Nairobi", "Lagos", "Cape Town", "Dubai", "Mumbai", "Delhi", "Bangkok", "Singapore",
          "Jakarta", "Manila", "Seoul", "Tokyo", "Osaka", "Beijing", "Shanghai", "Hong Kong", "Sydney", "Melbourne",
          "Auckland", "Toronto", "Montreal", "Vancouver", "New York", "Boston", "Chicago", "Denver", "Seattle",
          "San Francisco", "Los Angeles", "Miami", "Houston", "Mexico City", "Lima", "Bogota", "Santiago",
          "Buenos Aires", "Rio de Janeiro", "Sao Paulo", "Reykjavik", "Edinburgh", "Munich", "Hamburg", "Lyon",
          "Marseille", "Barcelona", "Valencia", "Milan", "Naples", "Budapest", "Bucharest", "Sofia", "Kyiv",
          "Riga", "Tallinn", "Vilnius", "Krakow", "Porto", "Seville", "Florence"]
SKIES = ["sunny", "cloudy", "rainy", "snowy", "foggy", "windy", "stormy", "clear"]
WEATHER_ASKS = ["Weather in {c}?", "What's the weather in {c}?", "What is the weather like in {c}?",
                "How is the weather in {c} today?", "Tell me the weather in {c}.", "Is it raining in {c}?",
                "What's the weather like in {c} right now?", "weather {c}", "Do I need an umbrella in {c}?",
                "How warm is it in {c}?"]
CALC_ASKS = ["What is {e}?", "Calculate {e}.", "Compute {e}", "How much is {e}?", "What's {e}?",
             "Please calculate {e}.", "{e} = ?", "Work out {e} for me."]
UNIT_PAIRS = [("km", "miles", 0.621371), ("miles", "km", 1.609344), ("kg", "pounds", 2.204623),
              ("pounds", "kg", 0.453592), ("meters", "feet", 3.280840), ("feet", "meters", 0.3048),
              ("liters", "gallons", 0.264172), ("gallons", "liters", 3.785412), ("cm", "inches", 0.393701),
              ("inches", "cm", 2.54), ("celsius", "fahrenheit", None), ("fahrenheit", "celsius", None)]
UNIT_ASKS = ["Convert {v} {f} to {t}.", "How many {t} is {v} {f}?", "What is {v} {f} in {t}?",
             "{v} {f} in {t}?", "Please convert {v} {f} into {t}."]
GREETINGS = ["Hi", "Hi there", "Hello", "Hello!", "Hey", "Good morning", "Good evening", "Hi!", "Hello there",
             "Hey there!"]
PRIME_ASKS = ["Is {n} prime?", "Is {n} a prime number?", "Is {n} a prime number? Answer in one sentence.",
              "Is {n} prime? Answer briefly.", "Tell me whether {n} is prime.", "Is {n} a prime?"]
FIXED = [("Who are you?", "The user asks who I am. I should introduce myself briefly.",
          "I am the LightMesh demo model, a small MiniMax-M1-shaped model trained from scratch."),
         ("What can you do?", "The user asks what I can do. I should list the tools I know.",
          "I can check the weather, do arithmetic and convert units when you give me the tools."),
         ("Thank you!", "The user thanks me. I should reply politely.", "You are welcome!"),
         ("Thanks", "The user thanks me. I should reply politely.", "You are welcome!"),
         ("Goodbye", "The user says goodbye. I should say goodbye too.", "Goodbye! Have a nice day."),
         ("How are you?", "The user asks how I am. I should answer and offer help.",
          "I am fine, thank you. How can I help you today?")]
SYSTEMS = ["You are a helpful assistant.", "You are a concise assistant.", "Answer briefly."]


def think(text):
    return "<think>\n" + text + "\n</think>\n"


def num(x):
    """A number as Python's json.dumps writes it (int when whole), rounded to 3 decimals."""
    x = round(x, 3)
    return int(x) if x == int(x) else x


def args_json(d):
    return json.dumps(d)


def tool_set(rng, needed):
    if rng.random() < 0.4:
        return [needed]
    others = [t for t in TOOLS if t is not needed]
    chosen = [needed] + rng.sample(others, rng.randint(1, 2))
    rng.shuffle(chosen)
    return chosen


def weather_chat(rng):
    c = rng.choice(CITIES)
    sky, deg = rng.choice(SKIES), rng.randint(-10, 35)
    ask = rng.choice(WEATHER_ASKS).format(c=c)
    r1 = f"The user asks for the weather in {c}. I should call get_weather with the city {c}."
    result = json.dumps({"sky": sky, "celsius": deg}, separators=(",", ":"))
    r2 = f"get_weather returned {sky} and {deg} degrees Celsius for {c}."
    answer = f"It is {sky} in {c}, {deg} degrees Celsius."
    return WEATHER, ask, r1, {"city": c}, result, r2, answer


def calc_chat(rng):
    op = rng.choice(["+", "-", "*", "/"])
    a = rng.randint(1, 999) if rng.random() < 0.7 else rng.randint(1, 99)
    b = rng.randint(1, 99) if op in "*/" else rng.randint(1, 999)
    e = f"{a} {op} {b}"
    value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op]
    v = num(value)
    ask = rng.choice(CALC_ASKS).format(e=e)
    r1 = f"The user asks me to compute {e}. I should call calculator with the expression {e}."
    result = json.dumps({"result": v}, separators=(",", ":"))
    r2 = f"calculator returned {v} for {e}."
    answer = f"{e} = {v}."
    return CALCULATOR, ask, r1, {"expression": e}, result, r2, answer


def units_chat(rng):
    f, t, k = rng.choice(UNIT_PAIRS)
    v = rng.randint(1, 500) if rng.random() < 0.8 else num(rng.randint(1, 999) / 10)
    if f == "celsius":
        out = v * 9 / 5 + 32
    elif f == "fahrenheit":
        out = (v - 32) * 5 / 9
    else:
        out = v * k
    o = num(out)
    ask = rng.choice(UNIT_ASKS).format(v=v, f=f, t=t)
    r1 = f"The user wants {v} {f} in {t}. I should call convert_units with value {v}, from_unit {f} and to_unit {t}."
    result = json.dumps({"value": o, "unit": t}, separators=(",", ":"))
    r2 = f"convert_units returned {o} {t}."
    answer = f"{v} {f} is {o} {t}."
    return UNITS, ask, r1, {"value": v, "from_unit": f, "to_unit": t}, result, r2, answer


def smallest_factor(n):
    for p in range(2, math.isqrt(n) + 1):
        if n % p == 0:
            return p
    return None


def prime_chat(rng):
    n = rng.randint(2, 2000)
    ask = rng.choice(PRIME_ASKS).format(n=n)
    p = smallest_factor(n)
    head = f"The user asks whether {n} is prime. A prime number has no divisors other than 1 and itself. "
    if p is None:
        r = head + f"I check the primes up to {math.isqrt(n)}: none of them divides {n}. So {n} is prime."
        answer = f"Yes, {n} is prime."
    else:
        r = head + f"{n} is divisible by {p}, because {n} = {p} x {n // p}. So {n} is not prime."
        answer = f"No, {n} is not prime: {n} = {p} x {n // p}."
    return ask, r, answer


def plain_turn(rng):
    x = rng.random()
    if x < 0.25:
        return rng.choice(GREETINGS), "The user greets me. I should greet them back and offer help.", \
            "Hello! How can I help you today?"
    if x < 0.35:
        return rng.choice(FIXED)
    return prime_chat(rng)


def msg(role, content, **kw):
    m = {"role": role, "content": content}
    m.update(kw)
    return m


def generate(tool_chats, plain_chats, seed):
    rng = random.Random(seed)
    kinds = ["tool"] * tool_chats + ["plain"] * plain_chats
    rng.shuffle(kinds)
    out = []
    for i, kind in enumerate(kinds):
        system = [msg("system", rng.choice(SYSTEMS))] if rng.random() < 0.15 else []
        if kind == "tool":
            tool, ask, r1, args, result, r2, answer = rng.choice([weather_chat, calc_chat, units_chat])(rng)
            tools = tool_set(rng, tool)
            call = {"name": tool["name"], "arguments": args_json(args)}
            # the turn that calls the tool, then the whole round trip ending in the answer
            out.append({"chat": i, "tools": tools, "messages": system + [
                msg("user", ask), msg("assistant", think(r1), tool_calls=[call])]})
            out.append({"chat": i, "tools": tools, "messages": system + [
                msg("user", ask), msg("assistant", "", tool_calls=[call]), msg("tool", result, name=tool["name"]),
                msg("assistant", think(r2) + answer)]})
        else:
            tools = tool_set(rng, rng.choice(TOOLS)) if rng.random() < 0.3 else []
            history = []
            if rng.random() < 0.2:  # an earlier exchange, as a client sends it back (answer only)
                q0, _, a0 = plain_turn(rng)
                history = [msg("user", q0), msg("assistant", a0)]
            q, r, a = plain_turn(rng)
            out.append({"chat": i, "tools": tools, "messages": system + history + [
                msg("user", q), msg("assistant", think(r) + a)]})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--tool-chats", type=int, default=9000)
    ap.add_argument("--plain-chats", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    chats = generate(args.tool_chats, args.plain_chats, args.seed)
    with open(args.out, "w", encoding="ascii", newline="\n") as fh:
        for c in chats:
            fh.write(json.dumps(c, ensure_ascii=True, separators=(",", ":")) + "\n")
    print(f"chats: {len(chats)} conversations ({args.tool_chats} tool chats as 2 each, {args.plain_chats} plain) "
          f"-> {args.out}")


if __name__ == "__main__":
    main()
