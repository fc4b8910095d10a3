#!/usr/bin/env python3
"""Generates the chat-template fixtures for cvllm's Jinja engine (src/chat/).

Two sets, both rendered by Python jinja2 in the exact environment transformers builds for chat
templates (transformers.utils.chat_template_utils._compile_jinja_template / render_jinja_template):

1. tests/golden/data/chat/conformance/<template>.json — for every real chat template in
   ../shared/testdata/chat-templates/ plus the ones of the models we run (SmolLM2 from its GGUF,
   Qwen2.5 — the same text as the shared Qwen2.5 template, Gemma 3), a set of conversations
   (system/user/assistant turns, multi-turn, tool calls and results, empty system, unicode,
   add_generation_prompt on/off, continue_final_message) as OpenAI-style requests. Each is turned
   into template input the way vLLM does (chat_utils._parse_chat_message_content +
   _postprocess_messages, transcribed below for text-only content; the content format decided
   by vLLM's AST walk in renderers/hf.py::_detect_content_format, transcribed below on jinja2's
   own AST), then rendered the way tokenizer.apply_chat_template(tokenize=False) does. Templates
   that raise for a conversation record the error (type, message, template line).
2. tests/golden/data/chat/jinja_cases.json — a table of (template, context, expected or error)
   covering the language: whitespace control, literals, Python operator semantics, filters,
   tests, methods, loops, macros, namespaces, errors.

strftime_now is pinned to FIXED_NOW by replacing the `datetime` that transformers' strftime_now
reads; the C++ tests pin it to the same instant.

Usage: python3 scripts/gen_chat_template_fixtures.py   (needs transformers, jinja2, gguf)
"""

import copy
import datetime
import json
import os
import random
import sys
import traceback
import warnings
from collections import deque
from pathlib import Path

import jinja2
import jinja2.meta
import jinja2.nodes
import transformers
import transformers.utils.chat_template_utils as hf_chat

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "testdata" / "chat-templates"
OUT = ROOT / "tests" / "golden" / "data" / "chat"
SMOLLM2_GGUF = Path.home() / ".cache" / "cvllm" / "SmolLM2-135M-Instruct.Q4_1.gguf"
FIXED_NOW = datetime.datetime(2024, 9, 5, 13, 7, 42, 123456)
FIXED_NOW_TEXT = "2024-09-05 13:07:42.123456"


class _FixedDateTime(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW


def pin_clock():
    hf_chat.datetime = _FixedDateTime


# ---------------------------------------------------------------------------------------------
# Errors as the C++ tests check them: the exception type, its message and the template line.


def write_fixture(path, data):
    """Compact JSON with one list item (case, conversation) per line, for small, readable diffs."""
    def dump(value, indent):
        pad = " " * indent
        if isinstance(value, dict) and any(isinstance(v, (dict, list)) and v for v in value.values()) and indent < 2:
            items = [f'{pad} {json.dumps(k, ensure_ascii=False)}: {dump(v, indent + 1)}' for k, v in value.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(value, list) and value and indent < 2:
            return "[\n" + ",\n".join(pad + "  " + json.dumps(v, ensure_ascii=False) for v in value) + "\n" + pad + "]"
        return json.dumps(value, ensure_ascii=False)
    path.write_text(dump(data, 0) + "\n")


def describe_error(e):
    line = None
    for frame in traceback.extract_tb(e.__traceback__):
        if frame.filename == "<template>":
            line = frame.lineno
    if isinstance(e, jinja2.TemplateSyntaxError):
        line = e.lineno
        message = e.message
    elif isinstance(e, SyntaxError):
        # Python's compile error in jinja2's generated code (e.g. 'break' outside loop): its
        # location is in the generated module, not in the template.
        message = e.msg
    else:
        message = str(e)
    return {"type": type(e).__name__, "message": message, "line": line}


# ---------------------------------------------------------------------------------------------
# vLLM's content-format detection (vllm/renderers/hf.py), on jinja2's AST.


def _is_var_access(node, varname):
    return isinstance(node, jinja2.nodes.Name) and node.ctx == "load" and node.name == varname


def _is_attr_access(node, varname, key):
    if isinstance(node, jinja2.nodes.Getitem):
        return (_is_var_access(node.node, varname) and isinstance(node.arg, jinja2.nodes.Const)
                and node.arg.value == key)
    if isinstance(node, jinja2.nodes.Getattr):
        return _is_var_access(node.node, varname) and node.attr == key
    return False


def _is_var_or_elems_access(node, varname, key=None):
    if isinstance(node, jinja2.nodes.Filter):
        return node.node is not None and _is_var_or_elems_access(node.node, varname, key)
    if isinstance(node, jinja2.nodes.Test):
        return _is_var_or_elems_access(node.node, varname, key)
    if isinstance(node, jinja2.nodes.Getitem) and isinstance(node.arg, jinja2.nodes.Slice):
        return _is_var_or_elems_access(node.node, varname, key)
    return _is_attr_access(node, varname, key) if key else _is_var_access(node, varname)


def _messages_varnames(root):
    names = ["messages"]
    seen = {"messages"}
    queue = deque(["messages"])
    while queue:
        related = queue.popleft()
        for assign in root.find_all(jinja2.nodes.Assign):
            if _is_var_or_elems_access(assign.node, related):
                assert isinstance(assign.target, jinja2.nodes.Name)
                names.append(assign.target.name)
                if assign.target.name not in seen:
                    seen.add(assign.target.name)
                    queue.append(assign.target.name)
    return names


def detect_content_format(chat_template):
    try:
        env = hf_chat._compile_jinja_template(chat_template).environment
        root = env.parse(chat_template)
    except Exception:
        return "string"
    try:
        messages_vars = _messages_varnames(root)
        message_vars = []
        for loop in root.find_all(jinja2.nodes.For):
            for name in messages_vars:
                if _is_var_or_elems_access(loop.iter, name):
                    assert isinstance(loop.target, jinja2.nodes.Name)
                    message_vars.append(loop.target.name)
                    break
        for loop in root.find_all(jinja2.nodes.For):
            for name in message_vars:
                if _is_var_or_elems_access(loop.iter, name, "content"):
                    assert isinstance(loop.target, jinja2.nodes.Name)
                    return "openai"
    except Exception:
        return "string"
    return "string"


# ---------------------------------------------------------------------------------------------
# vLLM's message parsing for text-only content (vllm/entrypoints/chat_utils.py).


def vllm_parse_messages(messages, content_format):
    conversation = []
    for msg in copy.deepcopy(messages):
        role = msg["role"]
        content = msg.get("content")
        reasoning = msg.get("reasoning")
        if content is None:
            content = []
        elif isinstance(content, str):
            content = [{"type": "text", "text": content}]
        parts = []  # (type, text)
        for part in content:
            if isinstance(part, str):
                parts.append(("text", part))
                continue
            ptype = part.get("type")
            field = {"refusal": "refusal", "thinking": "thinking"}.get(ptype, "text")
            if ptype in ("text", "input_text", "output_text", "refusal", "thinking"):
                if part.get(field) is None and ptype in ("text", "refusal"):
                    continue
                parts.append(("text", part[field]))
            elif ptype == "tool_reference":
                parts.append(("tool_reference", part.get("name")))
            else:
                raise ValueError(f"fixture uses an unsupported part type {ptype!r}")
        if content_format == "openai":
            result = {"role": role, "content": [
                {"type": "text", "text": t} if kind == "text" else {"type": "tool_reference", "name": t}
                for kind, t in parts]}
        else:
            result = {"role": role, "content": "\n".join(t for _, t in parts)}
        if role == "assistant":
            if "tool_calls" in msg and msg["tool_calls"] is not None:
                result["tool_calls"] = list(msg["tool_calls"])
            if reasoning is not None:
                result["reasoning"] = reasoning
                result["reasoning_content"] = reasoning
        elif role == "tool":
            if "tool_call_id" in msg:
                result["tool_call_id"] = msg["tool_call_id"]
            if isinstance(result["content"], list):
                if not any(isinstance(i, dict) and i.get("type") != "text" for i in result["content"]):
                    items = [i.get("text", "") for i in result["content"] if i.get("type") == "text"]
                    result["content"] = "\n".join(items) if items else ""
        if "name" in msg and isinstance(msg["name"], str):
            result["name"] = msg["name"]
        if "task" in msg and isinstance(msg["task"], str):
            result["task"] = msg["task"]
        if role == "developer":
            result["tools"] = msg.get("tools", None)
        conversation.append(result)
    for message in conversation:
        if message["role"] == "assistant" and "tool_calls" in message:
            calls = message["tool_calls"]
            if not isinstance(calls, list):
                continue
            if not calls:
                message.pop("tool_calls")
                continue
            for item in calls:
                args = item["function"].get("arguments")
                if isinstance(args, str):
                    try:
                        item["function"]["arguments"] = json.loads(args)
                    except json.JSONDecodeError:
                        item["function"]["arguments"] = {}
                elif not isinstance(args, (dict, list)):
                    item["function"]["arguments"] = {}
    return conversation


# ---------------------------------------------------------------------------------------------
# transformers' apply_chat_template(tokenize=False), with vLLM's check of the two flags first.

BOTH_FLAGS_MESSAGE = "Cannot set both `continue_final_message` and `add_generation_prompt` to True."


def apply_chat_template(chat_template, messages, tools, add_generation_prompt,
                        continue_final_message, special_tokens, kwargs):
    if continue_final_message and add_generation_prompt:
        raise ValueError(BOTH_FLAGS_MESSAGE)  # vLLM's request validation
    if not messages:
        raise ValueError("Cannot apply chat template to an empty conversation. Provide at least one message.")
    conversation = hf_chat._normalize_chat_messages(copy.deepcopy(messages))
    template_kwargs = {**special_tokens, **kwargs}
    rendered, _ = hf_chat.render_jinja_template(
        conversations=[conversation], tools=copy.deepcopy(tools), documents=None,
        chat_template=chat_template, continue_final_message=continue_final_message,
        add_generation_prompt=add_generation_prompt, **template_kwargs)
    return rendered[0]


# ---------------------------------------------------------------------------------------------
# Templates and conversations

LLAMA3 = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}

TEMPLATES = [
    # The tool-use templates iterate `tools` unconditionally, so every conversation gets tools.
    # Command R+'s json_to_python_type needs `additionalProperties` on object parameters, which
    # SEARCH_TOOL lacks (that error is covered by the other templates' fixtures).
    {"name": "CohereForAI-c4ai-command-r-plus-tool_use", "always_tools": True,
     "tools": "simple",
     "special_tokens": {"bos_token": "<BOS_TOKEN>", "eos_token": "<|END_OF_TURN_TOKEN|>",
                        "pad_token": "<PAD>", "unk_token": "<UNK>"}},
    {"name": "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use", "always_tools": True,
     "special_tokens": {"bos_token": "<|begin_of_text|>", "eos_token": "<|im_end|>",
                        "pad_token": "<|end_of_text|>"}},
    {"name": "Qwen-Qwen2.5-7B-Instruct",
     "special_tokens": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}},
    {"name": "deepseek-ai-DeepSeek-R1-Distill-Llama-8B",
     "special_tokens": {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}},
    {"name": "fireworks-ai-llama-3-firefunction-v2", "special_tokens": LLAMA3,
     # The template reads `functions` and `datetime`, which callers pass as chat_template_kwargs.
     "kwargs": {"functions": "[]", "datetime": "2024-09-05"},
     "tool_kwargs": True},
    {"name": "google-gemma-2-2b-it",
     "special_tokens": {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
                        "unk_token": "<unk>"}},
    {"name": "meetkai-functionary-medium-v3.2", "special_tokens": LLAMA3},
    {"name": "meta-llama-Llama-3.1-8B-Instruct", "special_tokens": LLAMA3,
     "kwarg_variants": [{"date_string": "01 Jan 2025"}, {"tools_in_user_message": False},
                        {"builtin_tools": ["brave_search", "wolfram_alpha"]}]},
    {"name": "meta-llama-Llama-3.2-3B-Instruct", "special_tokens": LLAMA3,
     "kwarg_variants": [{"date_string": "01 Jan 2025"}, {"tools_in_user_message": False}]},
    {"name": "HuggingFaceTB-SmolLM2-135M-Instruct", "local": True,
     "special_tokens": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                        "unk_token": "<|endoftext|>", "pad_token": "<|im_end|>"}},
    {"name": "google-gemma-3-it", "local": True,
     "special_tokens": {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
                        "unk_token": "<unk>"}},
    # The example templates we ship for --chat-template.
    {"name": "template_chatml", "example": True,
     "special_tokens": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}},
    {"name": "template_llama3", "example": True, "special_tokens": LLAMA3},
    {"name": "template_plain", "example": True, "special_tokens": {"bos_token": "</s>", "eos_token": "</s>"}},
]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"],
                         "description": "The temperature unit"},
            },
            "required": ["location"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search_documents",
        "description": "Search the document store.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for"},
                "max_results": {"type": "integer", "description": "How many results", "default": 5,
                                "minimum": 1, "maximum": 50},
                "filters": {"type": "object", "description": "Field filters",
                            "properties": {"year": {"type": "number", "description": "Publication year"},
                                           "tags": {"type": "array", "items": {"type": "string"},
                                                    "description": "Tags to match"}},
                            "required": ["year"]},
                "exact": {"type": "boolean", "description": "Exact phrase match"},
            },
            "required": ["query"],
        },
    },
}
LIST_TOOL = {
    "type": "function",
    "function": {
        "name": "add_numbers",
        "description": "Add a list of numbers.",
        "parameters": {
            "type": "object",
            "properties": {"numbers": {"type": "array", "items": {"type": "number"},
                                       "description": "The numbers"},
                           "round": {"type": ["integer", "number"], "description": "Digits to keep"}},
            "required": ["numbers"],
        },
    },
}
TOOLS = [WEATHER_TOOL, SEARCH_TOOL]
SIMPLE_TOOLS = [WEATHER_TOOL, LIST_TOOL]


def tool_call(call_id, name, arguments):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


CONVERSATIONS = {
    "single_user": {"messages": [{"role": "user", "content": "Hello!"}]},
    "system_user": {"messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"}]},
    "multi_turn": {"messages": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Hi, who are you?"},
        {"role": "assistant", "content": "I am an AI assistant. How can I help?"},
        {"role": "user", "content": "Write a haiku about the sea."}]},
    "no_system_multi": {"messages": [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "2 + 2 = 4."},
        {"role": "user", "content": "And times 3?"}]},
    "empty_system": {"messages": [
        {"role": "system", "content": ""},
        {"role": "user", "content": "Hello with an empty system prompt."}]},
    "unicode": {"messages": [
        {"role": "user", "content": "Привет, 世界! 🌍 café — «quotes» 'single' \"double\" and a\ttab"},
        {"role": "assistant", "content": "こんにちは 👋 naïve résumé ✓"},
        {"role": "user", "content": "Ünïcödé again: 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \\ backslash"}]},
    "whitespace": {"messages": [
        {"role": "system", "content": "  System with spaces.  \n"},
        {"role": "user", "content": "\n\n  Lots of\n\n whitespace here  \n\n"}]},
    "ends_with_assistant": {"messages": [
        {"role": "user", "content": "Start a story about a dragon."},
        {"role": "assistant", "content": "Once upon a time, a dragon"}]},
    "ends_with_assistant_system": {"messages": [
        {"role": "system", "content": "You write JSON."},
        {"role": "user", "content": "Give me a person object."},
        {"role": "assistant", "content": "{\"name\": \"Ada\", "}]},
    "content_parts": {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "First part."},
                                     {"type": "text", "text": "Second part."}]}]},
    "null_content": {"messages": [
        {"role": "user", "content": "Say nothing."},
        {"role": "assistant", "content": None},
        {"role": "user", "content": "Now say something."}]},
    "name_field": {"messages": [
        {"role": "system", "content": "Moderate the chat."},
        {"role": "user", "name": "alice", "content": "Hi all!"}]},
    "reasoning": {"messages": [
        {"role": "user", "content": "What is 17 * 3?"},
        {"role": "assistant", "reasoning": "17 * 3 = 51.",
         "content": "<think>\n17 * 3 = 51.\n</think>\n\nThe answer is 51."},
        {"role": "user", "content": "Thanks!"}]},
    "consecutive_users": {"messages": [
        {"role": "user", "content": "First."},
        {"role": "user", "content": "Second."}]},
    "assistant_first": {"messages": [
        {"role": "assistant", "content": "I speak first."},
        {"role": "user", "content": "Okay."}]},
    "tools_available": {"tools": TOOLS, "messages": [
        {"role": "user", "content": "What's the weather like in Paris?"}]},
    "tool_call": {"tools": TOOLS, "messages": [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "What's the weather like in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            tool_call("call_1", "get_current_weather", "{\"location\": \"Paris, France\", \"unit\": \"celsius\"}")]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 22, \"condition\": \"sunny\"}"},
        {"role": "assistant", "content": "It is 22°C and sunny in Paris."},
        {"role": "user", "content": "Great, thanks!"}]},
    "tool_call_pending": {"tools": TOOLS, "messages": [
        {"role": "user", "content": "Weather in Tokyo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            tool_call("call_9", "get_current_weather", "{\"location\": \"Tokyo\"}")]},
        {"role": "tool", "tool_call_id": "call_9", "content": "Rainy, 18 degrees."}]},
    "parallel_tool_calls": {"tools": TOOLS, "messages": [
        {"role": "user", "content": "Compare the weather in Paris and Rome, and find papers on rain."},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            tool_call("call_a", "get_current_weather", "{\"location\": \"Paris\"}"),
            tool_call("call_b", "get_current_weather", "{\"location\": \"Rome\", \"unit\": \"fahrenheit\"}"),
            tool_call("call_c", "search_documents",
                      "{\"query\": \"rain\", \"max_results\": 3, \"filters\": {\"year\": 2023, \"tags\": [\"climate\"]}}")]},
        {"role": "tool", "tool_call_id": "call_a", "content": "15 C, cloudy"},
        {"role": "tool", "tool_call_id": "call_b", "content": "75 F, clear"},
        {"role": "tool", "tool_call_id": "call_c", "content": [{"type": "text", "text": "3 papers"},
                                                                {"type": "text", "text": "found"}]},
        {"role": "assistant", "content": "Paris is cloudy; Rome is clear. I found 3 papers."}]},
    "tool_call_bad_arguments": {"tools": TOOLS, "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [
            tool_call("call_x", "get_current_weather", "not json")]},
        {"role": "tool", "tool_call_id": "call_x", "content": "error"},
        {"role": "user", "content": "Try again."}]},
}


def load_template(spec):
    if spec.get("example"):
        return (ROOT / "examples" / f"{spec['name']}.jinja").read_text()
    if spec.get("local"):
        return (OUT / "templates" / f"{spec['name']}.jinja").read_text()
    return (SHARED / f"{spec['name']}.jinja").read_text()


def extract_smollm2_template():
    import gguf
    reader = gguf.GGUFReader(str(SMOLLM2_GGUF))
    field = reader.fields["tokenizer.chat_template"]
    text = bytes(field.parts[field.data[0]]).decode("utf-8")
    (OUT / "templates" / "HuggingFaceTB-SmolLM2-135M-Instruct.jinja").write_text(text)


def conversation_tools(spec, conv):
    tools = conv.get("tools")
    if tools is None and spec.get("always_tools"):
        tools = [WEATHER_TOOL]
    if tools is not None and spec.get("tools") == "simple":
        tools = SIMPLE_TOOLS
    return tools


def render_case(template, spec, conv_name, conv, messages, agp, cfm, kwargs):
    kw = {**spec.get("kwargs", {}), **kwargs}
    tools = conversation_tools(spec, conv)
    if tools is not None and spec.get("tool_kwargs"):
        kw["functions"] = json.dumps([t["function"] for t in tools], indent=2)
    case = {"conversation": conv_name, "add_generation_prompt": agp,
            "continue_final_message": cfm}
    if kw:
        case["kwargs"] = kw
    try:
        case["expected"] = apply_chat_template(template, messages, tools, agp, cfm,
                                               spec["special_tokens"], kw)
    except Exception as e:  # noqa: BLE001 - every failure is a fixture
        case["error"] = describe_error(e)
    return case


def generate_conformance():
    (OUT / "conformance").mkdir(parents=True, exist_ok=True)
    summary = []
    for spec in TEMPLATES:
        template = load_template(spec)
        content_format = detect_content_format(template)
        conversations = {}
        cases = []
        for conv_name, conv in CONVERSATIONS.items():
            messages = vllm_parse_messages(conv["messages"], content_format)
            conversations[conv_name] = {"openai_messages": conv["messages"], "messages": messages,
                                        "tools": conversation_tools(spec, conv)}
            for agp in (True, False):
                cases.append(render_case(template, spec, conv_name, conv, messages, agp, False, {}))
            if conv["messages"][-1]["role"] == "assistant":
                cases.append(render_case(template, spec, conv_name, conv, messages, False, True, {}))
        conv = CONVERSATIONS["multi_turn"]
        messages = conversations["multi_turn"]["messages"]
        cases.append(render_case(template, spec, "multi_turn", conv, messages, True, True, {}))
        for kwargs in spec.get("kwarg_variants", []):
            for conv_name in ("multi_turn", "tool_call"):
                conv = CONVERSATIONS[conv_name]
                cases.append(render_case(template, spec, conv_name, conv,
                                         conversations[conv_name]["messages"], True, False, kwargs))
        kind = "examples" if spec.get("example") else "local" if spec.get("local") else "shared"
        source = f"{kind}:{spec['name']}.jinja"
        env = hf_chat._compile_jinja_template(template).environment
        undeclared = sorted(jinja2.meta.find_undeclared_variables(env.parse(template)))
        fixture = {"template": source, "special_tokens": spec["special_tokens"], "now": FIXED_NOW_TEXT,
                   "content_format": content_format, "undeclared_variables": undeclared,
                   "conversations": conversations, "cases": cases}
        path = OUT / "conformance" / f"{spec['name']}.json"
        write_fixture(path, fixture)
        errors = sum("error" in c for c in cases)
        summary.append(f"{spec['name']}: {len(cases)} cases ({errors} errors), format {content_format}, "
                       f"{path.stat().st_size // 1024} KiB")
    return summary


# ---------------------------------------------------------------------------------------------
# Language cases

TREE = [{"name": "a", "children": [{"name": "b", "children": []},
                                  {"name": "c", "children": [{"name": "d", "children": []}]}]}]
USERS = [{"name": "Bob", "age": 30, "tags": ["x"]}, {"name": "alice", "age": 25},
         {"name": "Carol", "age": 30, "tags": []}, {"name": "dave", "age": None}]

LANGUAGE_CASES = [
    # --- whitespace control, trim_blocks / lstrip_blocks as transformers sets them
    ("a\n{% if true %}\nb\n{% endif %}\nc", {}),
    ("  {% if true %}x{% endif %}  \ny", {}),
    ("{%- if true -%}  x  {%- endif -%}  y", {}),
    ("a  {{- 'b' -}}  c", {}),
    ("a\n  {{ 'b' }}\n  c", {}),
    ("   {%+ if true %}x{% endif %}", {}),
    ("{% if true +%}\nx{% endif %}", {}),
    ("{# comment #}\nx", {}),
    ("  {# comment #}  \nx", {}),
    ("a {#- c -#} b", {}),
    ("a {#+ c +#} b", {}),
    ("{% raw %}{{ x }}{% endraw %}", {}),
    ("  {% raw %}\n{{x}}\n  {% endraw %}\ny", {}),
    ("{%- raw -%}  {% if %}  {%- endraw -%}  z", {}),
    ("x\n", {}),
    ("x\n\n", {}),
    ("a\r\nb\rc\n", {}),
    ("{% for i in [1, 2] %}\n  {{ i }}\n{% endfor %}\n", {}),
    ("{% for i in [1, 2] %}\n  {{- i }}\n{%- endfor %}", {}),
    ("<{%- for i in [1,2] -%}\n {{ i }} \n{%- endfor -%}>", {}),
    ("{% if true %}  \t\n{% endif %}x", {}),
    ("\t{% set x = 1 %}\n\t{{ x }}\n", {}),
    ("a {% if true %}b{% endif %}\n  c", {}),
    ("{{ 'x' }}\n{% if true %}\ny{% endif %}", {}),
    ("line\n    {%- if true %} kept{% endif %}", {}),
    ("{{ '{{ not a tag }}' }}", {}),
    ("{{ {'a': {'b': 1}} }}", {}),
    ("{{ 'a' }}{# {{ x }} #}{{ 'b' }}", {}),
    ("{% if true %}\u3000\n{% endif %}|", {}),
    # --- literals and printing
    ("{{ 1 }} {{ -1 }} {{ 1.5 }} {{ 1e3 }} {{ 1_000 }} {{ 0x1F }} {{ 0b101 }} {{ 0o17 }} {{ 2.50 }}", {}),
    ("{{ 1e-7 }} {{ 123456789012345678.0 }} {{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 1e-5 }} {{ 1e400 }}", {}),
    ("{{ 0.1 + 0.2 }} {{ 1 / 3 }} {{ 2 ** 0.5 }} {{ 100.0 }} {{ 1.5e300 }} {{ -0.0 }} {{ 3.0 * 1.1 }}", {}),
    ("{{ 'a' 'b' \"c\" }}", {}),
    ("{{ 'tab\\there' }}|{{ 'nl\\nx' }}|{{ '\\u00e9\\x41\\101\\'\\\\' }}|{{ 'unknown \\d escape' }}", {}),
    ("{{ none }} {{ None }} {{ true }} {{ True }} {{ false }} {{ False }}", {}),
    ("{{ [1, 'a', none, true, 1.0] }} {{ (1,) }} {{ () }} {{ (1, 'b') }} {{ {'a': 1, 2: [3], none: (4,)} }}", {}),
    ("{{ [\"it's\", 'say \"hi\"', 'both \\' \"', 'back\\\\slash', 'nl\\n'] }}", {}),
    ("{{ ['é', '\u00a0', '\u200b', '\x7f', '🌍', '\x01', '\u2028'] }}", {}),
    ("{{ x }}|{{ x.a }}|{{ x['b'] }}|{{ x.c.d }}", {"x": {"a": 1, "b": [1, 2], "c": {"d": "e"}}}),
    ("{{ x }}", {"x": {"nested": {"list": [1, 2.5, None, True, "s"], "empty": {}}}}),
    # --- arithmetic
    ("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }}", {}),
    ("{{ 2 ** 10 }} {{ 2 ** -1 }} {{ 10 / 4 }} {{ 10 / 5 }} {{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }}", {}),
    ("{{ -2 ** 2 }} {{ 2 ** 3 ** 2 }} {{ 10 - 2 - 3 }} {{ 2 * 3 % 4 }} {{ -3 // 2 * 2 }}", {}),
    ("{{ 'ab' * 3 }}|{{ 3 * 'ab' }}|{{ [1] * 3 }}|{{ 'a' * 0 }}|{{ 'a' * -1 }}|{{ (1, 2) * 2 }}", {}),
    ("{{ 'a' ~ 1 ~ none ~ [1] ~ 2.0 }}|{{ 1 ~ 2 + 3 }}|{{ 'x' ~ undefined_thing ~ 'y' }}", {}),
    ("{{ true + 1 }} {{ true * 'x' }} {{ false - 1 }} {{ -true }} {{ 1 + 1.0 }}", {}),
    ("{{ [1, 2] + [3] }} {{ (1,) + (2,) }} {{ 'a' + 'b' }}", {}),
    ("{{ 1 / 0 }}", {}),
    ("{{ 1 // 0 }}", {}),
    ("{{ 5 % 0 }}", {}),
    ("{{ 1.0 / 0 }}", {}),
    ("{{ 'a' + 1 }}", {}),
    ("{{ 1 + 'a' }}", {}),
    ("{{ [1] + 'a' }}", {}),
    ("{{ none + 1 }}", {}),
    ("{{ 'a' - 'b' }}", {}),
    ("{{ -'a' }}", {}),
    ("{{ 'a' * 1.5 }}", {}),
    ("{{ '%s and %s' % ('a', 'b') }}|{{ '%d%%' % 50 }}|{{ '%s' % 'x' }}|{{ '%s' % [1, 2] }}|{{ '%s' % none }}", {}),
    ("{{ '%5.2f|%-5d|%05d|%x|%X|%o|%r|%c|%+d|% d|%.3s|%e|%g|%i' % (3.14159, 42, 42, 255, 255, 8, 'q', 65, 5, 5, 'abcdef', 12345.678, 0.0001, 7.9) }}", {}),
    ("{{ '%(x)s-%(y)05.1f' % {'x': 1, 'y': 2.25} }}|{{ 'no args' % {} }}", {}),
    ("{{ '%s %s' % ('a',) }}", {}),
    ("{{ '%s' % ('a', 'b') }}", {}),
    ("{{ '{} {}'.format(1, 'a') }}|{{ '{0}{1}{0}'.format('a', 'b') }}|{{ '{x}-{y}'.format(x=1, y=[2]) }}", {}),
    ("{{ '{:>5}|{:<5}|{:^5}|{:05d}|{:.2f}|{:,}|{:+d}|{!r}|{:*^9}|{:x}|{:.1%}|{:e}'.format('a', 'b', 'c', 42, 3.14159, 1234567, 5, 'q', 'mid', 255, 0.256, 12345.6789) }}", {}),
    ("{{ '{0[a]} {0[b][1]} {1.x}'.format({'a': 1, 'b': [2, 3]}, {'x': 'attr'}) }}|{{ '{{literal}}'.format() }}", {}),
    # --- comparison and logic
    ("{{ 1 == 1.0 }} {{ 1 != 2 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ (1, 2) == (1, 2) }} {{ [1, 2] == (1, 2) }}", {}),
    ("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ none == none }} {{ {} == {} }} {{ {'a': 1, 'b': 2} == {'b': 2, 'a': 1} }} {{ true == 1 }} {{ 'é' > 'z' }}", {}),
    ("{{ 'b' in 'abc' }} {{ 'x' not in 'abc' }} {{ 1 in [1, 2] }} {{ 'a' in {'a': 1} }} {{ 1 in {'a': 1} }} {{ 'a' in ('a',) }} {{ '' in 'x' }} {{ 1.0 in [1] }}", {}),
    ("{{ 1 and 2 }} {{ 0 and 2 }} {{ 0 or 'x' }} {{ '' or none }} {{ not 0 }} {{ not [] }} {{ not [0] }} {{ [] or {} }}", {}),
    ("{{ 'yes' if 1 else 'no' }}|{{ 'yes' if 0 }}|{{ 'a' if 0 else 'b' if 1 else 'c' }}|{{ ('yes' if 0) is defined }}", {}),
    ("{% for v in [0, 1, '', 'a', [], [0], {}, {'a': 1}, none, 0.0, 0.5, ' '] %}{{ 'T' if v else 'F' }}{% endfor %}", {}),
    ("{{ not 1 == 2 }} {{ not 'a' in 'abc' }} {{ not none is none }} {{ -1 < 0 and not 1 < 0 }}", {}),
    ("{{ 'a' < 1 }}", {}),
    ("{{ [1] > ['a'] }}", {}),
    ("{{ 1 in 'abc' }}", {}),
    ("{{ 'a' in none }}", {}),
    ("{{ [1] in {'a': 1} }}", {}),
    # --- undefined
    ("{{ u == none }} {{ u is defined }} {{ u is undefined }} [{{ u }}] {{ u|default('d') }} {{ none|default('d') }} {{ none|default('d', true) }} {{ ''|default('d', true) }} {{ 0|default('d') }} {{ u|d('x') }}", {}),
    ("{{ u|length }}{% for x in u %}x{% endfor %}{{ u is iterable }}{{ u in [1] }}{{ 1 in u }}{{ u is sequence }}{{ u is callable }}{{ u is mapping }}{{ u is string }}", {}),
    ("{{ u == u2 }} {{ u != 1 }} {{ not u }} {{ u or 'fallback' }} {{ u and 1 }} {{ u|string }}|{{ u|list }}", {}),
    ("{{ foo.bar }}", {}),
    ("{{ foo() }}", {}),
    ("{{ foo + 1 }}", {}),
    ("{{ 1 + foo }}", {}),
    ("{{ foo[0] }}", {}),
    ("{{ foo < 1 }}", {}),
    ("{{ d.missing.x }}", {"d": {}}),
    ("{{ [1][5].x }}", {}),
    ("{{ d.missing + 'x' }}", {"d": {"a": 1}}),
    ("{{ none.attr }}|{{ (none.attr) is defined }}", {}),
    ("{{ none.attr.x }}", {}),
    ("{{ 'abc'.nope }}|{{ 'abc'.nope is defined }}", {}),
    ("{{ 'abc'.nope() }}", {}),
    # --- subscripts and slices
    ("{{ s[0] }}|{{ s[-1] }}|{{ s[1:3] }}|{{ s[::-1] }}|{{ s[::2] }}|{{ s[-3:] }}|{{ s[:-3] }}|{{ s[10:] }}|{{ s[1:-1:2] }}|{{ s[20] }}|", {"s": "héllo wörld"}),
    ("{{ l[1:] }}|{{ l[::-1] }}|{{ l[-2::-2] }}|{{ l[5] }}|{{ l[-10:10] }}|{{ l[1:1] }}|{{ l[:-1] }}|{{ l.0 }}|{{ l[-1] }}|{{ l[True] }}", {"l": [1, 2, 3, 4, 5]}),
    ("{{ l[::0] }}", {"l": [1]}),
    ("{{ l['a'] }}|{{ l[1.5] }}|{{ d[[1]] }}|{{ d[1] }}|{{ d['1'] }}|{{ d.get(1) }}", {"l": [1], "d": {"1": "str-key"}}),
    ("{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 5) }} {{ d.keys()|list }} {{ d.values()|list }} {{ d.items()|list }} {{ d['items'] }} {{ d.copy() }}", {"d": {"a": 1, "items": "ITEMS"}}),
    ("{{ d.keys() }}|{{ d.items()|length }}|{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {"d": {"b": 1, "a": 2}}),
    # --- string methods
    ("[{{ s.strip() }}][{{ s.lstrip() }}][{{ s.rstrip() }}][{{ 'xxhixx'.strip('x') }}][{{ 'abcba'.strip('ab') }}]", {"s": "  \t hi there \n "}),
    ("{{ 'a,b,,c'.split(',') }}{{ ' a  b  '.split() }}{{ 'a b c'.split(' ', 1) }}{{ 'a b c'.rsplit(' ', 1) }}{{ ''.split(',') }}{{ ''.split() }}{{ 'a\\nb\\r\\nc'.splitlines() }}", {}),
    ("{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'abc'.startswith('b', 1) }} {{ 'abc'.endswith('b', 0, 2) }}", {}),
    ("{{ 'aaa'.replace('a', 'b') }} {{ 'aaa'.replace('a', 'b', 2) }} {{ 'ab'.replace('', '-') }} {{ 'Hello World'.upper() }} {{ 'Hello World'.lower() }}", {}),
    ("{{ \"they're bill's friends\".title() }}|{{ 'hELLO wORLD'.capitalize() }}|{{ 'Hello'.swapcase() }}|{{ 'straße'.upper() }}|{{ 'ÉCOLE ΣΊΣΥΦΟΣ'.lower() }}|{{ 'привет мир'.title() }}", {}),
    ("{{ 'hello'.find('l') }} {{ 'hello'.rfind('l') }} {{ 'hello'.find('z') }} {{ 'hello'.index('e') }} {{ 'héllo'.find('l') }} {{ 'banana'.count('an') }} {{ 'hello'.find('l', 3) }}", {}),
    ("{{ ', '.join(['a', 'b']) }}|{{ 'x'.center(5) }}|{{ 'x'.center(6, '*') }}|{{ 'x'.ljust(3, '-') }}|{{ 'x'.rjust(3) }}|{{ '42'.zfill(5) }}|{{ '-42'.zfill(5) }}", {}),
    ("{{ 'a=b=c'.partition('=') }}{{ 'a=b=c'.rpartition('=') }}{{ 'abc'.removeprefix('a') }}{{ 'abc'.removesuffix('c') }}", {}),
    ("{{ '123'.isdigit() }} {{ 'abc'.isalpha() }} {{ ' \\t'.isspace() }} {{ 'abc'.islower() }} {{ 'ABC'.isupper() }} {{ ''.isdigit() }} {{ 'a1'.isalnum() }} {{ 'Ab Cd'.istitle() }}", {}),
    ("{{ ', '.join([1, 2]) }}", {}),
    ("{{ 'abc'.index('z') }}", {}),
    ("{{ 'a'.split('') }}", {}),
    # --- filters
    ("[{{ '  x  '|trim }}][{{ 'xxaxx'|trim('x') }}][{{ s|upper }}][{{ s|lower }}][{{ s|title }}][{{ s|capitalize }}]", {"s": "hello wORLD-foo (bar) 1st"}),
    ("{{ x|tojson }}", {"x": {"a": [1, 2.0, None, True, "é<>&'\""], "b": {"c": "line\nbreak\ttab\u0001"}}}),
    ("{{ x|tojson(indent=2) }}|{{ x|tojson(indent=0) }}|{{ []|tojson(indent=2) }}|{{ {}|tojson(indent=2) }}", {"x": {"a": [1, {"b": []}], "c": {}}}),
    ("{{ x|tojson(ensure_ascii=true) }}|{{ x|tojson(sort_keys=true) }}|{{ x|tojson(separators=(',', ':')) }}|{{ x|tojson(indent='--') }}", {"x": {"z": "é🌍", "a": 1}}),
    ("{{ x|tojson(true) }}|{{ 'str'|tojson }}|{{ 1.0|tojson }}|{{ 1e20|tojson }}|{{ (1, 2)|tojson }}|{{ none|tojson }}|{{ {1: 2, none: 3}|tojson }}", {"x": ["é"]}),
    ("{{ u|tojson }}", {}),
    ("{{ [1, 2, 3]|length }} {{ 'héllo'|length }} {{ {'a': 1}|count }} {{ []|length }}", {}),
    ("{{ l|join(', ') }}|{{ l|join }}|{{ users|join(', ', attribute='name') }}|{{ [1, none, true]|join('-') }}", {"l": ["a", "b"], "users": USERS}),
    ("{{ l|first }}|{{ l|last }}|{{ 'abc'|first }}|{{ 'abc'|last }}|{{ {'k': 1, 'j': 2}|first }}|{{ {'k': 1, 'j': 2}|last }}|{{ []|first }}|{{ []|last }}", {"l": [1, 2, 3]}),
    ("{{ {'b': 1, 'a': 2}|items|list }}|{{ u|items|list }}|{% for k, v in {'x': 1}|items %}{{ k }}{{ v }}{% endfor %}", {}),
    ("{{ 'abc'|list }}|{{ {'b': 1, 'a': 2}|list }}|{{ (1, 2)|list }}", {}),
    ("{{ users|map(attribute='name')|list }}|{{ users|map(attribute='age', default=0)|list }}|{{ ['a', 'B']|map('upper')|list }}|{{ ['a b']|map('replace', ' ', '_')|list }}|{{ users|map(attribute='tags.0')|list }}", {"users": USERS}),
    ("{{ [1, 2, 3, 4]|select('odd')|list }}|{{ [1, 2, 3, 4]|reject('odd')|list }}|{{ [0, 1, '', 'a']|select|list }}|{{ [1, 5, 10]|select('greaterthan', 3)|list }}|{{ ['a', 'b']|select('in', ['b'])|list }}", {}),
    ("{{ users|selectattr('age', 'equalto', 30)|map(attribute='name')|list }}|{{ users|rejectattr('tags')|map(attribute='name')|list }}|{{ users|selectattr('tags', 'defined')|list|length }}|{{ users|selectattr('age', 'none')|list|length }}", {"users": USERS}),
    ("{% if []|select %}generator is truthy{% endif %}|{% if [] %}x{% else %}empty list is falsy{% endif %}", {}),
    ("{{ [1]|select|length }}", {}),
    ("{{ [1]|map('nosuchfilter')|list }}", {}),
    ("{{ 'a-b-c'|replace('-', '+') }}|{{ 'a-b-c'|replace('-', '+', 1) }}|{{ 1|string ~ 'x' }}|{{ [1]|string }}|{{ none|string }}", {}),
    ("{{ '42'|int }} {{ '42.7'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ 3.9|int }} {{ -3.9|int }} {{ 'ff'|int(base=16) }} {{ '0x1f'|int(0, 16) }} {{ ' 12 '|int }} {{ '1_000'|int }} {{ true|int }} {{ none|int }}", {}),
    ("{{ '3.5'|float }} {{ 'x'|float }} {{ 2|float }} {{ 'inf'|float }} {{ ' 1e3 '|float }} {{ none|float(1.5) }}", {}),
    ("{{ '1e5'|float }} {{ '1_0'|int }} {{ '  -3.5e-2 '|float }} {{ '5.'|float }} {{ '.5'|float }} {{ '1e'|float }} {{ '1__0'|float }} {{ 'nan'|float }} {{ '-Infinity'|float }} {{ '0x10'|float }} {{ '12abc'|int }} {{ '3.9'|int }} {{ ' 7 '|int }} {{ '٣'|int(-1) }} {{ (x ~ 'tail')|int(-1) }}", {"x": "1" * 3000}),
    ("[{{ 'a\\nb\\n\\nc'|indent }}][{{ 'a\\nb'|indent(2, true) }}][{{ 'a\\n\\nb'|indent(2, blank=true) }}][{{ 'a\\nb'|indent('> ') }}][{{ ''|indent(first=true) }}]", {}),
    ("{{ ['a', 'B', 'b', 'A', 'c']|unique|list }}|{{ ['a', 'B', 'b', 'A']|unique(case_sensitive=true)|list }}|{{ users|unique(attribute='age')|map(attribute='name')|list }}", {"users": USERS}),
    ("{{ {'b': 1, 'A': 3, 'a': 2}|dictsort }}|{{ {'b': 1, 'A': 3, 'a': 2}|dictsort(true) }}|{{ {'b': 1, 'a': 2}|dictsort(by='value', reverse=true) }}", {}),
    ("{{ [3, 1, 2]|sort }}|{{ [3, 1, 2]|sort(reverse=true) }}|{{ ['b', 'A', 'a', 'C']|sort }}|{{ ['b', 'A', 'a', 'C']|sort(case_sensitive=true) }}|{{ users|sort(attribute='name')|map(attribute='name')|list }}", {"users": USERS}),
    ("{{ users|selectattr('age')|sort(attribute='age,name')|map(attribute='name')|list }}", {"users": USERS}),
    ("{{ [1, 2, 3]|sum }} {{ users|selectattr('age')|sum(attribute='age') }} {{ [0.5, 1]|sum(start=10) }} {{ [3, 1, 2]|min }} {{ [3, 1, 2]|max }} {{ ['b', 'A']|min }} {{ []|max }}|{{ -5|abs }} {{ -2.5|abs }}", {"users": USERS}),
    ("{{ 2.5|round }} {{ 3.5|round }} {{ 2.675|round(2) }} {{ 42.55|round(1, 'floor') }} {{ 42.51|round(1, 'ceil') }} {{ 5|round }} {{ 1234.5|round(-2) }} {{ -0.5|round }}", {}),
    ("[{{ 'ab'|center(6) }}][{{ 'hello world foo'|wordcount }}][{{ 'the quick brown fox jumps over'|truncate(15) }}][{{ 'the quick brown fox jumps'|truncate(15, true) }}][{{ 'short'|truncate(10) }}][{{ 'abcdefghijklmnopqrstuvwxyz'|truncate(12, false, '..', 0) }}]", {}),
    ("{{ [1, 2, 3, 4, 5]|batch(2)|list }}|{{ [1, 2, 3]|batch(2, 'x')|list }}|{{ [1, 2, 3, 4, 5]|slice(2)|list }}|{{ [1, 2, 3, 4]|slice(3, 0)|list }}", {}),
    ("{{ [1, 2, 3]|reverse|list }}|{{ 'abc'|reverse }}|{{ (1, 2)|reverse|list }}|{{ {'a': 1, 'b': 2}|reverse|list }}", {}),
    ("{{ '%s-%s'|format(1, 'a') }}|{{ '%(k)s'|format(k='v') }}|{{ '<a href=\"x\">&</a>'|escape }}|{{ '<b>'|e }}|{{ '<b>x</b>'|safe }}|{{ '<p>Hello <b>World</b></p>  x'|striptags }}", {}),
    ("{{ users|groupby('age')|map(attribute='grouper')|list }}|{% for g in users|groupby('age', default=0) %}{{ g.grouper }}:{{ g.list|map(attribute='name')|join(',') }};{% endfor %}", {"users": USERS}),
    ("{{ {'a': 1}|attr('a') }}|{{ {'a': 1}|attr('a') is defined }}|{{ 'x'|attr('upper') is defined }}", {}),
    ("{{ 'hello world'|urlencode }}|{{ {'a': 'b c', 'd': 1}|urlencode }}|{{ 1000|filesizeformat }}|{{ 1536|filesizeformat(true) }}|{{ 1|filesizeformat }}|{{ 1500000|filesizeformat }}", {}),
    ("{{ foo|nosuchfilter }}", {}),
    ("{% if false %}{{ foo|nosuchfilter }}{% endif %}deferred", {}),
    ("{% if true %}{{ 1|nosuchfilter }}{% endif %}", {}),
    ("{{ 1 if false else 2|nosuchfilter }}", {}),
    ("{{ 'x'|dictsort }}", {}),
    ("{{ 'x'|items|list }}", {}),
    ("{{ [{'a': 1}, {'a': 1}]|unique|list }}", {}),
    # --- tests
    ("{{ 1 is defined }} {{ none is none }} {{ 1 is none }} {{ true is boolean }} {{ 1 is boolean }} {{ false is false }} {{ 0 is false }} {{ true is true }}", {}),
    ("{{ 1 is integer }} {{ true is integer }} {{ 1.0 is integer }} {{ 1.0 is float }} {{ 1 is number }} {{ true is number }} {{ 'a' is number }}", {}),
    ("{{ 'a' is string }} {{ 1 is string }} {{ {} is mapping }} {{ [] is mapping }} {{ [] is sequence }} {{ 'a' is sequence }} {{ {} is sequence }} {{ 3 is sequence }} {{ none is sequence }}", {}),
    ("{{ 'a' is iterable }} {{ [] is iterable }} {{ {} is iterable }} {{ none is iterable }} {{ 1 is iterable }} {{ ([1]|map('string')) is iterable }} {{ range is callable }} {{ 'a' is callable }}", {}),
    ("{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ 3.0 is odd }} {{ none is sameas none }} {{ 1 is sameas 1 }} {{ [] is sameas [] }}", {}),
    ("{{ 2 is in [1, 2] }} {{ 'a' is in 'abc' }} {{ 1 is eq 1 }} {{ 1 is equalto 1.0 }} {{ 1 is ne 2 }} {{ 2 is gt 1 }} {{ 2 is ge 2 }} {{ 1 is lt 2 }} {{ 1 is le 0 }} {{ 2 is greaterthan 1 }} {{ 2 is lessthan 1 }}", {}),
    ("{{ 'abc' is lower }} {{ 'ABC' is upper }} {{ 'Abc' is lower }} {{ 'upper' is filter }} {{ 'nope' is filter }} {{ 'odd' is test }} {{ u is not defined }} {{ 1 is not none }} {{ ns is mapping }}", {}),
    ("{{ 'a' is odd }}", {}),
    ("{{ x is nosuchtest }}", {}),
    # --- for loops
    ("{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}", {}),
    ("{% for x in [1, 2, 3] %}{{ loop.previtem }}-{{ loop.nextitem }}-{{ loop.cycle('odd', 'even') }}-{{ loop.changed(x // 2) }}-{{ loop.depth }}{{ loop.depth0 }};{% endfor %}", {}),
    ("{% for x in [] %}x{% else %}empty{% endfor %}|{% for x in [1] %}{{ x }}{% else %}no{% endfor %}|{% for x in [1, 2] if x > 5 %}{{ x }}{% else %}filtered-empty{% endfor %}", {}),
    ("{% for x in [3, 1, 4, 1, 5] if x > 1 %}{{ loop.index }}/{{ loop.length }}:{{ x }}{{ ',' if not loop.last }}{% endfor %}", {}),
    ("{% for x in [1, 2] %}{% for y in 'ab' %}{{ loop.index }}{{ x }}{{ y }} {% endfor %}{% endfor %}", {}),
    ("{% for x in [1, 2] %}{% set outer = loop %}{% for y in [1] %}{{ outer.index }}.{{ loop.index }} {% endfor %}{% endfor %}", {}),
    ("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}", {}),
    ("{% for a, b in [(1, 2), [3, 4]] %}{{ a }}{{ b }};{% endfor %}{% for k, v in {'x': 1, 'y': 2}.items() %}{{ k }}={{ v }};{% endfor %}{% for (a, b), c in [((1, 2), 3)] %}{{ a }}{{ b }}{{ c }}{% endfor %}", {}),
    ("{% for k in {'b': 1, 'a': 2} %}{{ k }}{% endfor %}|{% for c in 'héllo' %}[{{ c }}]{% endfor %}|{% for i in range(3) %}{{ i }}{% endfor %}|{{ range(1, 10, 3)|list }}|{{ range(5, 0, -2)|list }}|{{ range(0)|list }}", {}),
    ("{% for item in tree recursive %}<{{ item.name }}{% if item.children %}:{{ loop(item.children) }}{% endif %}@{{ loop.depth }}>{% endfor %}", {"tree": TREE}),
    ("{% set x = 0 %}{% for i in [1, 2] %}{{ x }}{% set x = x + i %}{{ x }}|{% endfor %}{{ x }}", {}),
    ("{% for i in [1, 2] %}{% if i == 2 %}[{{ z }}]{% endif %}{% set z = i %}{% endfor %}[{{ z }}]", {}),
    ("{% set ns = namespace(total=0, items=[]) %}{% for i in range(4) %}{% set ns.total = ns.total + i %}{% set ns.items = ns.items + [i * i] %}{% endfor %}{{ ns.total }} {{ ns.items }}", {}),
    ("{{ loop }}|{% for x in [1] %}{{ loop.index }}{% endfor %}|{{ loop is defined }}", {}),
    ("{% for a, b in [1, 2] %}{% endfor %}", {}),
    ("{% for a, b in [(1, 2, 3)] %}{% endfor %}", {}),
    ("{% for x in 5 %}{% endfor %}", {}),
    ("{% for x in none %}{% endfor %}", {}),
    ("{% for x in [1] %}{{ loop(x) }}{% endfor %}", {}),
    ("{{ range(100001)|length }}", {}),
    ("{{ range(1, 2, 0)|list }}", {}),
    ("{% for x in [1,2] %}{{ x }}{% endfor %}{% break %}", {}),
    # --- if / set / with / filter blocks
    ("{% if 0 %}a{% elif '' %}b{% elif [1] %}c{% else %}d{% endif %}|{% if none %}x{% else %}y{% endif %}", {}),
    ("{% if true %}{% set y = 3 %}{% endif %}{{ y }}", {}),
    ("{% set a, b = 1, 2 %}{{ a }}{{ b }}|{% set c = 1, 2 %}{{ c }}|{% set d = [1] %}{{ d }}", {}),
    ("{% set x %}  block {{ 1 + 1 }}  {% endset %}[{{ x }}]{% set y | upper | trim %}  up  {% endset %}[{{ y }}]", {}),
    ("{% set y %}{% set inner = 1 %}b{% endset %}[{{ inner }}{{ y }}]", {}),
    ("{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}]{% with %}{% set q = 5 %}{{ q }}{% endwith %}[{{ q }}]", {}),
    ("{% filter upper %}abc {{ 'def' }}{% endfilter %}|{% filter trim|replace('a', 'o') %}  banana  {% endfilter %}|{% filter upper %}{% set x = 1 %}{% endfilter %}[{{ x }}]", {}),
    ("{% print 'a', 1 + 1 %}", {}),
    ("{% generation %}gen {{ 1 }}{% endgeneration %}|{% generation %}{% set g = 1 %}{% endgeneration %}[{{ g }}]", {}),
    ("{% set x = 1 %}{% set x.y = 2 %}", {}),
    ("{% set ns = namespace() %}{% set ns._private = 1 %}", {}),
    ("{{ namespace(_x=1) }}", {}),
    # --- macros
    ("{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bo', 'Hi') }} {{ greet(greeting='Yo', name='Cy') }}", {}),
    ("{% macro m(a, b=a + 1) %}{{ a }}{{ b }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1) }}|{{ m(1, 2, 3, x=4) }}", {}),
    ("{% macro m(a) %}[{{ a }}]{{ a is defined }}{% endmacro %}{{ m() }}", {}),
    ("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}", {}),
    ("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, b=2) }}", {}),
    ("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, a=2) }}", {}),
    ("{% macro m() %}{{ caller() }}{% endmacro %}{{ m() }}", {}),
    ("{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}bold {{ 1 }}{% endcall %}|{% macro each(items) %}{% for i in items %}{{ caller(i, loop.index) }}{% endfor %}{% endmacro %}{% call(x, n) each(['a', 'b']) %}{{ n }}{{ x }};{% endcall %}", {}),
    ("{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% endmacro %}{{ fact(6) }}|{{ fact(3) ~ '!' }}|{{ (fact(3)|int) + 1 }}", {}),
    ("{% macro m() %}  spaced  {% endmacro %}[{{ m() }}][{{ m()|trim }}][{{ m|string }}][{{ m.name }}]", {}),
    ("{% set x = 1 %}{% macro m() %}{{ x }}{% endmacro %}{% set x = 2 %}{{ m() }}|{% for i in [1] %}{% set y = 5 %}{% macro n() %}{{ y }}{{ i }}{% endmacro %}{% set y = 6 %}{{ n() }}{% endfor %}", {}),
    ("{{ m() }}{% macro m() %}late{% endmacro %}", {}),
    ("{% macro m() %}{% set inner = 1 %}{{ inner }}{% endmacro %}{{ m() }}[{{ inner }}]", {}),
    ("{% macro outer() %}{% macro inner() %}in{% endmacro %}{{ inner() }}-out{% endmacro %}{{ outer() }}", {}),
    ("{% macro rec(n) %}{{ rec(n + 1) }}{% endmacro %}{{ rec(0) }}", {}),
    # --- globals
    ("{{ raise_exception('Custom failure: ' ~ 42) }}", {}),
    ("line 1\nline 2\n{% if true %}\n  {{ raise_exception('on line 4') }}\n{% endif %}", {}),
    ("{{ strftime_now('%Y-%m-%d %H:%M:%S') }}|{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%A %B %j %f %p %y %I %%') }}|[{{ strftime_now('%z%Z') }}]", {}),
    ("{{ dict(a=1, b=2) }} {{ dict([('x', 1)]) }} {{ dict({'k': 'v'}, z=0) }} {{ namespace(a=1) }} {{ namespace({'b': 2}).b }}", {}),
    ("{% set c = cycler('a', 'b') %}{{ c.next() }}{{ c.next() }}{{ c.next() }}{{ c.current }}|{% set j = joiner('|') %}{% for x in [1, 2, 3] %}{{ j() }}{{ x }}{% endfor %}", {}),
    ("{% set ns = namespace(a=1) %}{% set ns.b = 2 %}{{ ns.a }}{{ ns.b }}[{{ ns.c }}]{{ ns['a'] }}{{ ns }}", {}),
    # --- sandbox
    ("{% set l = [1] %}{{ l.append(2) }}", {}),
    ("{% set d = {} %}{{ d.update({'a': 1}) }}", {}),
    ("{{ [3, 1].sort() }}", {}),
    ("[{{ 'a'.__class__ }}]", {}),
    ("{{ 'a'.__class__.__name__ }}", {}),
    ("{{ [1, 2].pop }}", {}),
    # --- syntax errors (messages and lines as jinja2 reports them)
    ("{% for %}", {}),
    ("line1\n{% if x %}\nno end", {}),
    ("{{ x ", {}),
    ("a\n{% endfor %}", {}),
    ("{% blah %}", {}),
    ("{{ 'abc }}", {}),
    ("{{ }}", {}),
    ("{{ 1 + }}", {}),
    ("{{ (1 }}", {}),
    ("{{ [1, 2 }}", {}),
    ("{{ 1 ] }}", {}),
    ("{% for x in y %}{% endif %}", {}),
    ("{% if a %}{% for x in y %}{% endif %}", {}),
    ("{% macro m(a=1, b) %}{% endmacro %}", {}),
    ("{% set 1 = 2 %}", {}),
    ("{{ x is not }}", {}),
    ("{{ m(a=1, a=2) }}", {}),
    ("{# unterminated comment", {}),
    ("{% raw %} unterminated raw", {}),
    ("{% set x = 1 %", {}),
    ("{{ 'a' }}\n{{ 'b' }}\n{% include 'x.html' %}", {}),
    ("{{ 1 is is defined }}", {}),
    # --- compile-time constant folding: slices of constants go through getitem
    ("{{ 0[:2] }}|{{ (not [])[::-1] is defined }}|{{ ((1, 2)|first)[1:] is undefined }}", {}),
    ("{% if 1e3[:2] %}T{% endif %}", {}),
    ("{% set v = false[1:] %}", {}),
    ("{{ x[:1] }}", {"x": 5}),
    ("{{ {}[1:] }}|{{ (none[::-1] or 'folded') }}", {}),
    ("{{ d[1:] }}", {"d": {"a": 1}}),
    # --- dict views
    ("{{ d.keys() }}|{{ d.values() }}|{{ d.items() }}|{{ d.keys()|length }}|{{ 'a' in d.keys() }}|{{ d.items()|first }}|{{ d.keys() == ['a'] }}|{% if d.values() %}T{% endif %}", {"d": {"a": 1, "b": [2]}}),
    ("{{ d.keys()[0] }}|{{ d.keys()|tojson }}", {"d": {"a": 1}}),
    ("{{ {} in d.keys() }}", {"d": {"a": 1}}),
    # --- undefined through filters
    ("{{ u|int }}", {}),
    ("{{ u|float }}", {}),
    ("{{ u|indent }}", {}),
    ("{{ 'x' % u }}|{{ 'a%sb' % u }}|{{ u|truncate }}|{{ u|reverse|list }}|{{ u|wordcount }}|{{ u|title }}", {}),
    ("{{ '%(k)s' % u }}", {}),
    # --- chat-template idioms
    ("{% for m in messages %}{% if m.content is string %}{{ m.content|trim }}{% else %}{% for p in m.content %}{{ p.text }}{% endfor %}{% endif %}|{% endfor %}", {"messages": [{"content": " a "}, {"content": [{"type": "text", "text": "b"}, {"type": "text", "text": "c"}]}]}),
    ("{{ messages[1:]|map(attribute='role')|join(',') }}|{{ messages|length }}|{{ messages[-1]['role'] }}|{{ (messages|last).role }}|{{ messages|selectattr('role', 'equalto', 'user')|list|length }}", {"messages": [{"role": "system"}, {"role": "user"}, {"role": "assistant"}, {"role": "user"}]}),
    ("{%- for t in tools %}{{ t|tojson(indent=4) }}\n{%- endfor %}", {"tools": [WEATHER_TOOL]}),
    ("{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{{ add_generation_prompt }}", {}),
    ("{{ content.split('</think>')[-1]|trim }}", {"content": "<think>hmm</think>\n\nAnswer."}),
]


# Random templates from a small grammar of expressions and statements, for breadth: operator and
# filter combinations nobody would write by hand, which is where Python's corner cases hide.
RANDOM_ATOMS = ["1", "0", "-3", "2.5", "0.1", "1e3", "'a'", "'Hello World'", "''", "' x '", "'é✓'", "none",
                "true", "false", "[1, 2, 3]", "[]", "['b', 'a', 'C']", "{'k': 1, 'j': [2]}", "{}", "(1, 'x')",
                "x", "y", "s", "d", "l", "u", "n", "f", "m"]
RANDOM_BINOPS = ["+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", ">", "<=", ">=", "in", "not in",
                 "and", "or"]
RANDOM_FILTERS = ["length", "upper", "lower", "title", "capitalize", "trim", "first", "last", "list", "string",
                  "int", "float", "abs", "tojson", "join(', ')", "default('D')", "default('D', true)",
                  "reverse|list", "sort", "unique|list", "dictsort", "items|list", "map('string')|list",
                  "select|list", "reject|list", "sum", "min", "max", "replace('a', 'b')", "indent(2)",
                  "center(9)", "round", "round(1)", "wordcount", "truncate(5, true, '..', 0)", "batch(2)|list",
                  "tojson(indent=2)", "count", "format(1)", "selectattr('a')|list"]
RANDOM_TESTS = ["defined", "undefined", "none", "string", "number", "integer", "float", "mapping", "sequence",
                "iterable", "odd", "even", "divisibleby 2", "true", "false", "boolean", "sameas none",
                "in [1, 'a']", "eq 1", "lower", "upper", "callable"]
RANDOM_METHODS = ["upper()", "lower()", "strip()", "split()", "split(',')", "startswith('H')", "endswith('d')",
                  "replace('l', 'L')", "find('o')", "count('l')", "title()", "capitalize()", "get('k')",
                  "get('z', 0)", "keys()", "values()", "items()", "index(1)", "lstrip('H')", "rstrip('d')",
                  "isdigit()", "zfill(5)", "center(7, '*')", "join(['x','y'])", "format(1, 2)"]
RANDOM_CONTEXT = {"x": 5, "y": "txt", "s": "Hello World", "d": {"k": 1, "a": "v"}, "l": [3, 1, 2], "n": None,
                  "f": 1.5, "m": [{"a": 1}, {"a": 0}, {"b": 2}]}


def random_expr(rng, depth=0):
    r = rng.random()
    if depth > 3 or r < 0.3:
        return rng.choice(RANDOM_ATOMS)
    if r < 0.5:
        return f"({random_expr(rng, depth + 1)} {rng.choice(RANDOM_BINOPS)} {random_expr(rng, depth + 1)})"
    if r < 0.65:
        return f"{random_expr(rng, depth + 1)}|{rng.choice(RANDOM_FILTERS)}"
    if r < 0.75:
        return f"({random_expr(rng, depth + 1)} is {rng.choice(['', 'not '])}{rng.choice(RANDOM_TESTS)})"
    if r < 0.85:
        return f"{rng.choice(['s', 'd', 'l', chr(39) + 'a,b' + chr(39), 'x'])}.{rng.choice(RANDOM_METHODS)}"
    if r < 0.9:
        return f"{random_expr(rng, depth + 1)}[{rng.choice(['0', '-1', '1:', '::-1', chr(39) + 'k' + chr(39), ':2', '5'])}]"
    if r < 0.95:
        return f"({random_expr(rng, depth + 1)} if {random_expr(rng, depth + 1)} else {random_expr(rng, depth + 1)})"
    return f"(not {random_expr(rng, depth + 1)})"


def random_stmt(rng, depth=0):
    r = rng.random()
    if depth > 2 or r < 0.4:
        return "{{ %s }}" % random_expr(rng)
    if r < 0.55:
        iterable = rng.choice(["l", "s", "d", "[]", "range(3)", "d.items()", "l|reverse"])
        return "{%% for it in %s %%}[{{ loop.index }}{{ it }}]%s{%% else %%}E{%% endfor %%}" % (
            iterable, random_stmt(rng, depth + 1))
    if r < 0.7:
        return "{%% if %s %%}T%s{%% elif %s %%}E{%% else %%}F{%% endif %%}" % (
            random_expr(rng), random_stmt(rng, depth + 1), random_expr(rng))
    if r < 0.8:
        return "{%% set v = %s %%}{{ v }}" % random_expr(rng)
    if r < 0.9:
        return "{%% macro mm(a, b=2) %%}{{ a }}-{{ b }}%s{%% endmacro %%}{{ mm(%s) }}" % (
            random_stmt(rng, depth + 1), random_expr(rng))
    opener = rng.choice(["{%- if true %}", "{% if true -%}", "{%+ if true %}", "  {% if true %}"])
    return "%s%s{%% endif %%}\n  %s" % (opener, random_stmt(rng, depth + 1), random_stmt(rng, depth + 1))


def random_language_cases(count, seed=20240905):
    rng = random.Random(seed)
    return [("".join(random_stmt(rng) for _ in range(rng.randint(1, 3))), RANDOM_CONTEXT) for _ in range(count)]


def generate_language_cases():
    cases = []
    for template, context in LANGUAGE_CASES + random_language_cases(250):
        case = {"template": template, "context": context}
        try:
            compiled = hf_chat._compile_jinja_template(template)
            case["expected"] = compiled.render(**copy.deepcopy(context))
        except Exception as e:  # noqa: BLE001
            case["error"] = describe_error(e)
        cases.append(case)
    path = OUT / "jinja_cases.json"
    write_fixture(path, {"now": FIXED_NOW_TEXT, "cases": cases})
    errors = sum("error" in c for c in cases)
    return f"jinja_cases.json: {len(cases)} cases ({errors} errors), {path.stat().st_size // 1024} KiB"


# ---------------------------------------------------------------------------------------------
# Chat API cases: content-format detection, vLLM message parsing, apply_chat_template semantics.

CONTENT_FORMAT_TEMPLATES = [
    "{% for m in messages %}{{ m.content }}{% endfor %}",
    "{% for m in messages %}{% for c in m.content %}{{ c.text }}{% endfor %}{% endfor %}",
    "{% for m in messages %}{% for c in m['content'] %}{% endfor %}{% endfor %}",
    "{% set msgs = messages[1:] %}{% for m in msgs %}{% for c in m.content|selectattr('type', 'equalto', 'text') %}{% endfor %}{% endfor %}",
    "{% set a = messages %}{% set b = a|list %}{% for m in b %}{% for c in m.content %}{% endfor %}{% endfor %}",
    "{% set ns = namespace() %}{% set ns.m = messages %}{% for m in messages %}{% for c in m.content %}{% endfor %}{% endfor %}",
    "{% for m in messages %}{% set content = m['content'] %}{% for c in content %}{% endfor %}{% endfor %}",
    "{% macro render(msgs) %}{% for m in msgs %}{% for p in m.content %}{% endfor %}{% endfor %}{% endmacro %}{{ render(messages) }}",
    "{% for m in messages if m.role != 'system' %}{% for p in m.content %}{% endfor %}{% endfor %}",
    "{% for m in messages %}{% for p in m.content if p.type == 'text' %}{% endfor %}{% endfor %}",
    "{% for m in (messages|reverse) %}{% for p in m.content|list %}{% endfor %}{% endfor %}",
    "{% for m in messages %}{% for a, b in m.content %}{% endfor %}{% endfor %}",
    "{% for i, m in messages %}{% endfor %}{% for m in messages %}{% for p in m.content %}{% endfor %}{% endfor %}",
    "{% for x in messages[0].content %}{% endfor %}",
    "{% for m in messages %}{% if m.content is string %}{{ m.content }}{% else %}{% for p in m.content %}{{ p.text }}{% endfor %}{% endif %}{% endfor %}",
    "{% for m in messages %}{% for p in m.content %}{% endfor %}{% endfor %}{{ x|nosuchfilter }}",
    "{{ unclosed",
    "{% set m = messages[0] %}{% for p in m.content %}{% endfor %}",
    "{% for m in messages %}{% generation %}{% for p in m.content %}{% endfor %}{% endgeneration %}{% endfor %}",
]

NORMALIZE_MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": "Dev note.", "tools": [WEATHER_TOOL]},
    {"role": "developer", "content": "No tools."},
    {"role": "user", "content": None},
    {"role": "user", "name": "alice", "content": [
        {"type": "text", "text": "one"}, "two", {"type": "input_text", "text": "three"},
        {"type": "text", "text": None}, {"type": "refusal", "refusal": "no"},
        {"type": "output_text", "text": "four"}, {"type": "thinking", "thinking": "five"}]},
    {"role": "user", "name": 5, "task": "t1", "content": []},
    {"role": "assistant", "content": None, "reasoning": "Let me think.", "tool_calls": [
        tool_call("c1", "f", "{\"b\": 1, \"a\": [1, 2]}"),
        tool_call("c2", "g", ""),
        tool_call("c3", "h", "   "),
        tool_call("c4", "i", "[1, 2]"),
        tool_call("c5", "j", {"already": "dict"}),
        {"id": "c6", "type": "function", "function": {"name": "k"}},
        tool_call("c7", "l", "{bad json"),
        tool_call("c8", "m", "7")]},
    {"role": "assistant", "content": "No calls.", "tool_calls": []},
    {"role": "assistant", "content": "Null calls.", "tool_calls": None, "reasoning": None},
    {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "r1"}, {"type": "text", "text": "r2"}]},
    {"role": "tool", "tool_call_id": None, "content": "plain"},
    {"role": "tool", "content": [{"type": "tool_reference", "name": "ref"}, {"type": "text", "text": "x"}]},
    {"role": "tool", "content": []},
]

DUMP_TEMPLATE = ("{% for m in messages %}{{ m|tojson }}\n{% endfor %}agp={{ add_generation_prompt }}"
                 "|bos={{ bos_token }}|eos={{ eos_token }}|custom={{ custom }}|tools={{ tools|tojson }}"
                 "|documents={{ documents }}")
CONTENT_TEMPLATE = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}"
                    "{% if add_generation_prompt %}<assistant>{% endif %}")
TRIM_TEMPLATE = "{% for m in messages %}<{{ m.role }}>{{ m.content|trim }}</{{ m.role }}>{% endfor %}"
PARTS_TEMPLATE = ("{% for m in messages %}<{{ m.role }}>{% for p in m.content %}{% if p.type == 'text' %}"
                  "{{ p.text }}{% endif %}{% endfor %}</{{ m.role }}>{% endfor %}")
NO_CONTENT_TEMPLATE = "{% for m in messages %}{{ m.role }}{% endfor %}"
DROP_LAST_TEMPLATE = "{% for m in messages[:-1] %}<{{ m.content }}>{% endfor %}"

APPLY_CASES = [
    (DUMP_TEMPLATE, [{"role": "user", "content": "hi", "name": None, "extra": {"z": 1, "a": None}}], {}, {}),
    (DUMP_TEMPLATE, [{"role": "assistant", "content": "x", "reasoning": "r", "tool_calls": None}], {}, {}),
    (DUMP_TEMPLATE, [{"role": "assistant", "content": "x", "thinking": "t", "reasoning_content": "rc"}], {}, {}),
    (DUMP_TEMPLATE, [{"role": "user", "content": "hi"}], {"add_generation_prompt": False},
     {"custom": {"k": [1, "é"]}, "bos_token": "<override>"}),
    (DUMP_TEMPLATE, [{"role": "user", "content": "hi"}], {"tools": [WEATHER_TOOL]}, {}),
    (CONTENT_TEMPLATE, [{"role": "user", "content": "Say"}, {"role": "assistant", "content": "Hello there"}],
     {"continue_final_message": True, "add_generation_prompt": False}, {}),
    (CONTENT_TEMPLATE, [{"role": "user", "content": "Say"}, {"role": "assistant", "content": "Trailing space "}],
     {"continue_final_message": True, "add_generation_prompt": False}, {}),
    (TRIM_TEMPLATE, [{"role": "user", "content": "Say"}, {"role": "assistant", "content": "Trailing space  "}],
     {"continue_final_message": True, "add_generation_prompt": False}, {}),
    (TRIM_TEMPLATE, [{"role": "assistant", "content": "  "}],
     {"continue_final_message": True, "add_generation_prompt": False}, {}),
    (PARTS_TEMPLATE, [{"role": "assistant", "content": [{"type": "text", "text": "first"}, {"type": "image"},
                                                         {"type": "text", "text": "last"}]}],
     {"continue_final_message": True, "add_generation_prompt": False}, {}),
    (PARTS_TEMPLATE, [{"role": "assistant", "content": [{"type": "image"}]}],
     {"continue_final_message": True, "add_generation_prompt": False}, {}),
    (CONTENT_TEMPLATE, [{"role": "user", "content": "Say"}],
     {"continue_final_message": True, "add_generation_prompt": False}, {}),
    (CONTENT_TEMPLATE, [{"role": "assistant"}], {"continue_final_message": True, "add_generation_prompt": False}, {}),
    (CONTENT_TEMPLATE, [{"role": "assistant", "content": None}],
     {"continue_final_message": True, "add_generation_prompt": False}, {}),
    (NO_CONTENT_TEMPLATE, [{"role": "assistant", "content": "x"}],
     {"continue_final_message": True, "add_generation_prompt": False}, {}),
    (DROP_LAST_TEMPLATE, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
     {"continue_final_message": True, "add_generation_prompt": False}, {}),
    (CONTENT_TEMPLATE, [{"role": "assistant", "content": "x"}],
     {"continue_final_message": True, "add_generation_prompt": True}, {}),
    (CONTENT_TEMPLATE, [], {}, {}),
    ("{{ strftime_now('%Y-%m-%d %H:%M:%S.%f') }}", [{"role": "user", "content": "x"}], {}, {}),
]


def generate_api_cases():
    formats = [{"template": t, "format": detect_content_format(t)} for t in CONTENT_FORMAT_TEMPLATES]
    normalize = [{"format": f, "openai_messages": NORMALIZE_MESSAGES,
                  "messages": vllm_parse_messages(NORMALIZE_MESSAGES, f)} for f in ("string", "openai")]
    special_tokens = {"bos_token": "<s>", "eos_token": "</s>"}
    apply = []
    for template, messages, flags, kwargs in APPLY_CASES:
        case = {"template": template, "messages": messages, "tools": flags.get("tools"),
                "add_generation_prompt": flags.get("add_generation_prompt", True),
                "continue_final_message": flags.get("continue_final_message", False),
                "special_tokens": special_tokens, "kwargs": kwargs}
        try:
            case["expected"] = apply_chat_template(template, messages, case["tools"], case["add_generation_prompt"],
                                                   case["continue_final_message"], special_tokens, kwargs)
        except Exception as e:  # noqa: BLE001
            case["error"] = describe_error(e)
        apply.append(case)
    path = OUT / "chat_api_cases.json"
    write_fixture(path, {"now": FIXED_NOW_TEXT, "content_format": formats, "normalize": normalize,
                         "apply": apply})
    return f"chat_api_cases.json: {len(formats)} format, {len(normalize)} normalize, {len(apply)} apply cases"


def main():
    warnings.filterwarnings("ignore", category=SyntaxWarning)  # jinja2's generated code on odd constants
    pin_clock()
    os.makedirs(OUT / "templates", exist_ok=True)
    if SMOLLM2_GGUF.exists():
        extract_smollm2_template()
    print(f"transformers {transformers.__version__}, jinja2 {jinja2.__version__}")
    for line in generate_conformance():
        print(line)
    print(generate_language_cases())
    print(generate_api_cases())


if __name__ == "__main__":
    sys.exit(main())
