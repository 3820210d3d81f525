"""What the vLLM simulator answers, and when (stdlib only).

A request becomes a Plan: the prompt's token count, the output as a list of tokens
(reasoning, content or tool-call argument fragments), the finish reason, and the time
each SSE chunk is due. The tokenizer is "one token = one whitespace-separated word";
an output token is the word with the whitespace that follows it.

Answers come from a rule table (JSON list, first match wins), matched case-insensitively
as a regex against the last user message (when the last message is a tool result, the
answer is "Here is what I found: <the result's first 60 words>" instead):
    {"match": REGEX, "content": TEXT}
    {"match": REGEX, "tool_call": {"name": N, "arguments": {...}}, "content": FALLBACK}
    optional "reasoning": TEXT (replaces the default reasoning words)
{0}, {1}, ... in strings (argument values included) become the regex's groups 1, 2, ...
"""
import json
import os
import re
import uuid

import simlib

DEFAULT_RULES_FILE = "/opt/sim/rules.json"
DEFAULT_ANSWER = "I am a simulator and have no scripted answer for that."
DEFAULT_REASONING = ("Okay, the user wants an answer. Let me think about what they need, "
                     "check the facts, and then reply plainly without extra formatting.")
REASONING_FIELDS = ("reasoning", "reasoning_content", "both")


class RequestError(Exception):
    """A client error: becomes an HTTP status with vLLM's error JSON."""

    def __init__(self, status, message, kind="BadRequestError"):
        super().__init__(message)
        self.status = status
        self.kind = kind


class Settings:
    """The timing truth and behaviour switches, read once from the environment."""

    def __init__(self):
        self.ttft_ms = simlib.env_float("SIM_TTFT_MS", 50.0)
        self.prefill_ms_per_token = simlib.env_float("SIM_PREFILL_MS_PER_TOKEN", 0.0)
        self.decode_tok_s = simlib.env_float("SIM_DECODE_TOK_S", 50.0)
        self.chunk_tokens = max(1, simlib.env_int("SIM_CHUNK_TOKENS", 1))
        self.reasoning_tokens = max(0, simlib.env_int("SIM_REASONING_TOKENS", 12))
        self.reasoning_field = os.environ.get("SIM_REASONING_FIELD") or "reasoning"
        self.think_leak = os.environ.get("SIM_THINK_LEAK") == "1"
        self.arg_fragment_chars = max(1, simlib.env_int("SIM_ARG_FRAGMENT_CHARS", 8))
        if self.decode_tok_s <= 0:
            raise ValueError("SIM_DECODE_TOK_S must be > 0")
        if self.reasoning_field not in REASONING_FIELDS:
            raise ValueError(f"SIM_REASONING_FIELD must be one of {', '.join(REASONING_FIELDS)}")


# --- tokenizer ---------------------------------------------------------------------------

def count_words(text):
    return len(text.split())


def split_tokens(text):
    """'Paris is  nice.' -> ['Paris ', 'is  ', 'nice.'] (joined they give the text back,
    less leading whitespace)."""
    return re.findall(r"\S+\s*", text)


def text_of(content):
    """A message's content as text: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


# --- rules -------------------------------------------------------------------------------

def load_rules():
    """The rule table from SIM_RULES_JSON, else SIM_RULES_FILE, else /opt/sim/rules.json.
    Raises ValueError on a malformed table (the simulator then refuses to start)."""
    text = os.environ.get("SIM_RULES_JSON")
    source = "SIM_RULES_JSON"
    if not text:
        source = os.environ.get("SIM_RULES_FILE") or DEFAULT_RULES_FILE
        if not os.path.exists(source):
            return source, []
        with open(source, encoding="utf-8") as fh:
            text = fh.read()
    try:
        table = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{source}: not JSON: {exc}") from None
    if not isinstance(table, list):
        raise ValueError(f"{source}: must be a JSON list of rules")
    rules = []
    for n, rule in enumerate(table):
        if not isinstance(rule, dict) or not isinstance(rule.get("match"), str):
            raise ValueError(f"{source}: rule {n} needs a \"match\" regex string")
        if "content" not in rule and "tool_call" not in rule:
            raise ValueError(f"{source}: rule {n} needs \"content\" or \"tool_call\"")
        call = rule.get("tool_call")
        if call is not None and not (isinstance(call, dict) and isinstance(call.get("name"), str)
                                     and isinstance(call.get("arguments", {}), dict)):
            raise ValueError(f"{source}: rule {n}: tool_call needs a \"name\" and an "
                             "\"arguments\" object")
        try:
            pattern = re.compile(rule["match"], re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"{source}: rule {n}: bad regex {rule['match']!r}: {exc}") from None
        rules.append((pattern, rule))
    return source, rules


def _fill(value, groups):
    """Replace {0}, {1}, ... in every string inside value by the regex groups."""
    if isinstance(value, str):
        return re.sub(r"\{(\d+)\}",
                      lambda m: groups[int(m.group(1))] if int(m.group(1)) < len(groups)
                      else m.group(0), value)
    if isinstance(value, list):
        return [_fill(v, groups) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, groups) for k, v in value.items()}
    return value


def match_rule(rules, text):
    """The first rule whose regex is found in text, with its placeholders filled in."""
    for pattern, rule in rules:
        m = pattern.search(text)
        if m:
            return _fill(rule, [g or "" for g in m.groups()])
    return {"content": DEFAULT_ANSWER}


# --- the plan ----------------------------------------------------------------------------

class Plan:
    """One request's answer and schedule.

    tokens: list of (kind, text), kind in reasoning / content / arguments, already cut at
    max_tokens. chunks: list of (kind, text, first_token_index, token_count). tool: None or
    {"id", "name"} (the call header goes out just before the first arguments chunk).
    """

    def __init__(self, *, prompt_tokens, tokens, finish_reason, tool, settings):
        self.prompt_tokens = prompt_tokens
        self.tokens = tokens
        self.finish_reason = finish_reason
        self.tool = tool
        self.first_token_s = (settings.ttft_ms
                              + settings.prefill_ms_per_token * prompt_tokens) / 1000.0
        self.token_interval_s = 1.0 / settings.decode_tok_s
        self.chunks = []  # up to SIM_CHUNK_TOKENS tokens of one kind per chunk
        for index, (kind, text) in enumerate(tokens):
            last = self.chunks[-1] if self.chunks else None
            if last and last[0] == kind and last[3] < settings.chunk_tokens:
                self.chunks[-1] = (kind, last[1] + text, last[2], last[3] + 1)
            else:
                self.chunks.append((kind, text, index, 1))

    @property
    def completion_tokens(self):
        return len(self.tokens)

    def due(self, token_index):
        """Seconds after the request start at which this token is sent."""
        return self.first_token_s + token_index * self.token_interval_s

    def text(self, kind):
        return "".join(t for k, t in self.tokens if k == kind)


def plan_chat(payload, rules, settings, served_name, max_model_len):
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages: a non-empty list is required")
    model = payload.get("model")
    if model not in (None, served_name):
        raise RequestError(404, f"The model `{model}` does not exist.", "NotFoundError")
    tools = payload.get("tools") or []
    prompt_tokens = sum(count_words(text_of(m.get("content"))) for m in messages
                        if isinstance(m, dict))
    if tools:
        prompt_tokens += count_words(json.dumps(tools))
    last_user = next((text_of(m.get("content")) for m in reversed(messages)
                      if isinstance(m, dict) and m.get("role") == "user"), "")
    kwargs = payload.get("chat_template_kwargs") or {}
    thinking = kwargs.get("enable_thinking", True) is not False
    rule = None
    if isinstance(messages[-1], dict) and messages[-1].get("role") == "tool":
        # a tool result came back: answer from it instead of calling the tool again
        result = " ".join(text_of(messages[-1].get("content")).split()[:60])
        rule = {"content": f"Here is what I found: {result}"}
    return _plan(payload, rules, settings, max_model_len, prompt_tokens, last_user,
                 thinking, tools, rule)


def plan_completion(payload, rules, settings, served_name, max_model_len):
    model = payload.get("model")
    if model not in (None, served_name):
        raise RequestError(404, f"The model `{model}` does not exist.", "NotFoundError")
    prompt = payload.get("prompt")
    if isinstance(prompt, list):
        prompt = " ".join(str(p) for p in prompt)
    if not isinstance(prompt, str):
        raise RequestError(400, "prompt: a string is required")
    return _plan(payload, rules, settings, max_model_len, count_words(prompt), prompt,
                 False, [])


def _plan(payload, rules, settings, max_model_len, prompt_tokens, last_user, thinking, tools,
          rule=None):
    if prompt_tokens > max_model_len:
        raise RequestError(400, f"This model's maximum context length is {max_model_len} "
                                f"tokens. However, your request has {prompt_tokens} input "
                                "tokens. Please reduce the length of the input messages.")
    cap = payload.get("max_completion_tokens")
    if cap is None:
        cap = payload.get("max_tokens")
    if cap is None:
        cap = max_model_len - prompt_tokens
    elif not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        raise RequestError(400, f"max_tokens must be at least 1, got {cap}.")

    rule = rule or match_rule(rules, last_user)
    offered = {t.get("function", {}).get("name") for t in tools if isinstance(t, dict)}
    choice = payload.get("tool_choice")
    if isinstance(choice, dict):  # a named function: only that one may be called
        offered &= {choice.get("function", {}).get("name")}
    call = rule.get("tool_call")
    use_tool = bool(call and tools and choice != "none" and call["name"] in offered)

    tokens = []
    reasoning = rule.get("reasoning")
    if reasoning is None:
        words = DEFAULT_REASONING.split()
        reasoning = " ".join(words[i % len(words)] for i in range(settings.reasoning_tokens))
    if thinking:
        tokens += [("reasoning", t) for t in split_tokens(reasoning)]
    tool = None
    if use_tool:
        args = json.dumps(call.get("arguments", {}), ensure_ascii=False)
        step = settings.arg_fragment_chars
        tokens += [("arguments", args[i:i + step]) for i in range(0, len(args), step)]
        tool = {"id": "chatcmpl-tool-" + uuid.uuid4().hex, "name": call["name"]}
    else:
        content = rule.get("content")
        if content is None:
            content = DEFAULT_ANSWER
        if not thinking and settings.think_leak and reasoning:
            content = f"<think>\n{reasoning}\n</think>\n\n{content}"
        tokens += [("content", t) for t in split_tokens(content)]

    finish = "tool_calls" if use_tool else "stop"
    if len(tokens) > cap:
        tokens = tokens[:cap]
        finish = "length"
    if tool and not any(kind == "arguments" for kind, _ in tokens):
        tool = None  # cut off before the call began
    return Plan(prompt_tokens=prompt_tokens, tokens=tokens, finish_reason=finish, tool=tool,
                settings=settings)
