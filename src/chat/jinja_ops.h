// Python operator semantics on jinja values, with the sandbox's attribute/item lookup rules
// (jinja2's SandboxedEnvironment.getattr/getitem): arithmetic (int overflow is an error, as our
// ints are 64-bit), comparisons, `in`, len(), slicing.
#pragma once

#include <optional>
#include <string>

#include "chat/jinja_ast.h"
#include "chat/jinja_value.h"

namespace cvllm::jinja {

// `max_size` bounds strings and lists that `*` and `+` build.
Value binary_op(BinaryOp op, const Value& a, const Value& b, size_t max_size);
Value unary_op(UnaryOp op, const Value& v);
bool compare_op(CompareOp op, const Value& a, const Value& b);
// Python `item in container`.
bool contains(const Value& container, const Value& item);
// Python len(); TypeError for values without a length.
int64_t py_len(const Value& v);

// `obj.name`: methods of str/dict/list first, then items; undefined when missing.
Value get_attr(const Value& obj, const std::string& name);
// `obj[key]`: items first, then (for str keys) attributes; undefined when missing.
Value get_item(const Value& obj, const Value& key);
// `obj[start:stop:step]` on str/list/tuple; undefined for other values.
Value get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step);

// Checked 64-bit integer arithmetic; throws OverflowError.
int64_t checked_add(int64_t a, int64_t b);
int64_t checked_mul(int64_t a, int64_t b);

}  // namespace cvllm::jinja
