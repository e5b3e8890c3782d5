"""Each token's role in its sentence, per prompt: the five templates put different words at
the same position ("really" in one, "such" in another), so averages over prompts are taken by
role, never by one template's tokens. Roles come from the prompt's own text: the subject
({name} in the template), the word after it (the verb, "is"), the last word before the final
token (the noun), the final token (the period) and the words between (modifiers)."""

from __future__ import annotations

ROLES = ("BOS", "name", "verb", "modifiers", "noun", "period")


def word_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each space-separated word."""
    spans, at = [], 0
    for word in text.split(" "):
        spans.append((at, at + len(word)))
        at += len(word) + 1
    return spans


def prompt_roles(pieces: list[str], text: str, template: str, name: str, bos: bool) -> list[str]:
    """The role of each token of one prompt; `pieces` are its tokens as strings (BOS first when
    `bos`), which must spell `text`."""
    body = pieces[1:] if bos else pieces
    if "".join(body) != text:
        raise ValueError(f"the tokens {body!r} do not spell the prompt {text!r}")
    start = template.index("{name}")
    end = start + len(name)
    after = [s for s in word_spans(text) if s[0] > end]
    verb = after[0] if after else (end, end)
    noun_start = word_spans(text[: -len(body[-1])] if len(body) > 1 else text)[-1][0]
    roles = ["BOS"] if bos else []
    at = 0
    for i, piece in enumerate(body):
        c = at + (len(piece) - len(piece.lstrip(" ")))  # the piece's first non-space character
        at += len(piece)
        if i == len(body) - 1:
            roles.append("period")
        elif start <= c < end:
            roles.append("name")
        elif verb[0] <= c < verb[1]:
            roles.append("verb")
        elif c >= noun_start:
            roles.append("noun")
        else:
            roles.append("modifiers")
    return roles


def batch_roles(model, batch) -> list[list[str]]:
    """[prompt][position] roles of a same-length task batch."""
    bos_id = model.tokenizer.bos_token_id
    out = []
    for prompt, row in zip(batch.spec.prompts, batch.clean_tokens.tolist()):
        pieces = [model.to_string([t]) for t in row]
        template = batch.spec.templates[prompt.template]
        out.append(prompt_roles(pieces, prompt.text, template, prompt.name, row[0] == bos_id))
    return out


def position_roles(roles: list[list[str]]) -> list[str]:
    """Each position's role where every prompt agrees on it, else 'mixed'."""
    return [r[0] if len(set(r)) == 1 else "mixed" for r in zip(*roles)]


def role_masks(roles: list[list[str]], device=None):
    """{role: bool tensor [prompt, position]} for the roles present."""
    import torch

    table = torch.tensor([[ROLES.index(r) for r in row] for row in roles], device=device)
    return {role: table == i for i, role in enumerate(ROLES) if (table == i).any()}
