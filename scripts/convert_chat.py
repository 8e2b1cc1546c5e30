#!/usr/bin/env python3
"""Converts the chat sets of ../shared/DATA.md into nanochat-rs conversation JSONL
({"messages": [{"role": "user"|"assistant", "content": str}]} per line).

    convert_chat.py chitchat  PATH/TO/chitchat_dataset/dataset.json  OUT.jsonl [--limit N]
    convert_chat.py chatterbot PATH/TO/chatterbot_corpus/data/english OUT.jsonl [--limit N]

chitchat: each conversation's turns (runs of messages by one speaker, joined by newlines)
alternate between two people; the first speaker becomes the user, the second the assistant.
chatterbot: each YAML conversation is a list of alternating utterances.
Conversations are kept in file order (chitchat: sorted by id) so the output is deterministic.
"""
import glob
import json
import os
import sys


def chitchat(path):
    data = json.load(open(path, encoding="utf-8"))
    for key in sorted(data):
        turns = []
        for turn in data[key]["messages"]:
            text = "\n".join(m["text"].strip() for m in turn if m.get("text", "").strip())
            if text:
                turns.append(text)
        if len(turns) < 2:
            continue
        yield [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


def chatterbot(path):
    import yaml

    for f in sorted(glob.glob(os.path.join(path, "*.yml"))):
        doc = yaml.safe_load(open(f, encoding="utf-8"))
        for conv in doc.get("conversations", []):
            turns = [str(t).strip() for t in conv if isinstance(t, (str, int, float)) and str(t).strip()]
            if len(turns) < 2:
                continue
            yield [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


def main():
    kind, src, out = sys.argv[1:4]
    limit = int(sys.argv[sys.argv.index("--limit") + 1]) if "--limit" in sys.argv else None
    convs = {"chitchat": chitchat, "chatterbot": chatterbot}[kind](src)
    n = 0
    with open(out, "w", encoding="utf-8") as f:
        for messages in convs:
            if limit is not None and n >= limit:
                break
            f.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
            n += 1
    print(f"{kind}: {n} conversations -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
