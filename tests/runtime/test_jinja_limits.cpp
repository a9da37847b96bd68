// Hostile chat templates (issue 11): every resource a template can consume is bounded and every failure is one
// hlwq::Error naming the limit, never a stack overflow, trap, hang or runaway allocation. Each case here was a
// crash, hang or wrong answer before the limits existed (deep nesting, self-containing namespace, INT64_MIN % -1,
// 'a' * 2**63, nested range loops, a doubling macro, silent integer overflow, literals >= 2**63, an empty subscript).
#include <gtest/gtest.h>

#include <functional>

#include "core/error.h"
#include "runtime/jinja_eval.h"
#include "runtime/jinja_parser.h"

namespace hlwq::jinja {
namespace {

std::string render_src(const std::string& src, const RenderLimits& lim = {}) {
  auto t = parse_template(src, "<test>");
  return render(*t, {}, lim);
}

// The error text of f(), or "<no error>".
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

std::string repeat(const std::string& s, size_t n) {
  std::string out;
  for (size_t k = 0; k < n; ++k) out += s;
  return out;
}

#define EXPECT_ERROR_HAS(expr, needle)                                  \
  do {                                                                  \
    std::string msg_ = error_of([&] { (void)(expr); });                 \
    EXPECT_NE(msg_.find(needle), std::string::npos) << msg_;            \
  } while (0)

TEST(JinjaLimits, DeepNestingIsAParseErrorNotAStackOverflow) {
  const char* const kNeedle = "nests deeper than";
  EXPECT_ERROR_HAS(render_src("{{ " + repeat("(", 6000) + "1" + repeat(")", 6000) + " }}"), kNeedle);
  EXPECT_ERROR_HAS(render_src("{{ " + repeat("[", 6000) + repeat("]", 6000) + " }}"), kNeedle);
  EXPECT_ERROR_HAS(render_src("{{ " + repeat("not ", 100000) + "x }}"), kNeedle);
  EXPECT_ERROR_HAS(render_src("{{ " + repeat("-", 100000) + "1 }}"), kNeedle);
  EXPECT_ERROR_HAS(render_src("{{ x" + repeat(".a", 100000) + " }}"), kNeedle);
  EXPECT_ERROR_HAS(render_src("{{ x" + repeat("|trim", 100000) + " }}"), kNeedle);
  EXPECT_ERROR_HAS(render_src("{{ 1" + repeat(" + 1", 100000) + " }}"), kNeedle);
  EXPECT_ERROR_HAS(render_src("{{ 'a'" + repeat(" ~ 'a'", 100000) + " }}"), kNeedle);
  EXPECT_ERROR_HAS(render_src(repeat("{% if true %}", 20000) + repeat("{% endif %}", 20000)), kNeedle);
  // Moderate nesting is still fine.
  EXPECT_EQ(render_src("{{ " + repeat("(", 20) + "1" + repeat(")", 20) + " }}"), "1");
  EXPECT_EQ(render_src(repeat("{% if true %}", 30) + "x" + repeat("{% endif %}", 30)), "x");
}

// fuzz_chat_template finding (2026-11-30): `x[]` parsed into an index expression without its index, which the
// renderer then evaluated through a null pointer (UBSan). It is a syntax error, as in Jinja and Python.
TEST(JinjaLimits, EmptySubscriptIsAParseError) {
  const char* const kNeedle = "empty subscript";
  EXPECT_ERROR_HAS(render_src("{{ x[] }}"), kNeedle);
  EXPECT_ERROR_HAS(render_src("{{ [][] }}"), kNeedle);
  EXPECT_ERROR_HAS(render_src("{{ x[][0] }}"), kNeedle);
  EXPECT_ERROR_HAS(render_src("{% set y = x[] %}"), kNeedle);
  // Subscripts and slices with their parts left out are still fine.
  EXPECT_EQ(render_src("{{ [1, 2, 3][1] }}"), "2");
  EXPECT_EQ(render_src("{{ [1, 2, 3][1:] }}"), "[2, 3]");
  EXPECT_EQ(render_src("{{ [1, 2, 3][:] }}"), "[1, 2, 3]");
  EXPECT_EQ(render_src("{{ [1, 2, 3][::-1] }}"), "[3, 2, 1]");
}

TEST(JinjaLimits, NamespaceCannotContainItself) {
  EXPECT_ERROR_HAS(render_src("{% set ns = namespace(a=1) %}{% set ns.x = ns %}{{ ns }}"), "cannot store a namespace");
  EXPECT_ERROR_HAS(render_src("{% set ns = namespace() %}{% set ns.x = [1, {'k': ns}] %}"), "cannot store a namespace");
  // Plain values still go in, and a namespace may still be built from another one.
  EXPECT_EQ(render_src("{% set ns = namespace(a=1) %}{% set ns.x = [1, 2] %}{{ ns.x }}"), "[1, 2]");
  EXPECT_EQ(render_src("{% set a = namespace(v=1) %}{% set b = namespace(inner=a) %}{{ b.inner.v }}"), "1");
}

TEST(JinjaLimits, ValueNestingIsBounded) {
  // Deep lists built at run time, not in the source: refused at construction.
  EXPECT_ERROR_HAS(render_src("{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = [ns.l] %}"
                              "{% endfor %}{{ ns.l }}"),
                   "nest deeper than");
}

TEST(JinjaLimits, CheckedIntegerArithmetic) {
  EXPECT_ERROR_HAS(render_src("{{ (-9223372036854775807 - 1) // -1 }}"), "integer overflow");
  EXPECT_EQ(render_src("{{ (-9223372036854775807 - 1) % -1 }}"), "0");
  EXPECT_ERROR_HAS(render_src("{{ 2 ** 63 }}"), "integer overflow");
  EXPECT_EQ(render_src("{{ 2 ** 62 }}"), "4611686018427387904");
  EXPECT_EQ(render_src("{{ 3 ** 39 }}"), "4052555153018976267");  // exact: pow() in doubles rounds it
  EXPECT_ERROR_HAS(render_src("{{ 9223372036854775807 + 1 }}"), "integer overflow");
  EXPECT_ERROR_HAS(render_src("{{ (-9223372036854775807 - 1) - 1 }}"), "integer overflow");
  EXPECT_ERROR_HAS(render_src("{{ 4294967296 * 4294967296 }}"), "integer overflow");
  EXPECT_ERROR_HAS(render_src("{{ -(-9223372036854775807 - 1) }}"), "integer overflow");
  EXPECT_ERROR_HAS(render_src("{{ (-9223372036854775807 - 1)|abs }}"), "overflow");
  EXPECT_ERROR_HAS(render_src("{{ 1e300 * 1e300 |int }}"), "cannot convert");
  // Python semantics kept for ordinary values.
  EXPECT_EQ(render_src("{{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** -1 }}"), "-4 2 -2 0.5");
  EXPECT_ERROR_HAS(render_src("{{ 1 % 0 }}"), "division by zero");
}

TEST(JinjaLimits, LiteralsOutOfRangeAreClearErrors) {
  EXPECT_ERROR_HAS(render_src("{{ 9223372036854775808 }}"), "does not fit in 64 bits");
  EXPECT_ERROR_HAS(render_src("{{ " + repeat("9", 400) + " }}"), "does not fit in 64 bits");
  EXPECT_EQ(render_src("{{ 9223372036854775807 }}"), "9223372036854775807");
  EXPECT_EQ(render_src("{{ 1e999 }}"), "inf");
  EXPECT_ERROR_HAS(render_src("{{ '\\xZZ' }}"), "hex digits");
  EXPECT_ERROR_HAS(render_src("{{ '\\U00110000' }}"), "not a Unicode scalar value");
}

TEST(JinjaLimits, RunawayRenderingHitsABudget) {
  EXPECT_ERROR_HAS(render_src("{{ 'a' * 9223372036854775807 }}"), "over the");
  EXPECT_ERROR_HAS(render_src("{{ 'ab' * 4611686018427387904 }}"), "over the");
  EXPECT_ERROR_HAS(render_src("{{ range(9223372036854775807) }}"), "item limit");
  EXPECT_ERROR_HAS(render_src("{{ range(-9223372036854775807 - 1, 9223372036854775807) }}"), "item limit");
  RenderLimits small;
  small.max_steps = 200000;
  EXPECT_ERROR_HAS(render_src("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", small),
                   "steps");
  // A doubling macro: each level calls itself twice.
  EXPECT_ERROR_HAS(render_src("{% macro d(n) %}{% if n > 0 %}{{ d(n - 1) }}{{ d(n - 1) }}{% endif %}{% endmacro %}"
                              "{{ d(60) }}", small),
                   "steps");
  // Doubling a string: the output and string limits stop it long before memory runs out.
  EXPECT_ERROR_HAS(render_src("{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}"
                              "{% endfor %}{{ ns.s }}"),
                   "limit");
  RenderLimits tiny_out;
  tiny_out.max_output = 1000;
  EXPECT_ERROR_HAS(render_src("{% for i in range(10000) %}xx{% endfor %}", tiny_out), "rendered text would exceed");
  RenderLimits little_work;
  little_work.max_work = 1 << 20;
  EXPECT_ERROR_HAS(render_src("{% set s = 'a' * 100000 %}{% for i in range(1000) %}{% if 'b' in s %}{% endif %}"
                              "{% endfor %}", little_work),
                   "touched more than");
  // Unbounded recursion of a macro stops at the recursion limits.
  EXPECT_ERROR_HAS(render_src("{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}"), "deep");
  EXPECT_ERROR_HAS(render_src("{{ '[1]'|tojson(indent=100000000) }}"), "indent");
}

TEST(JinjaLimits, JsonInputDepthIsBounded) {
  nlohmann::ordered_json deep = nlohmann::ordered_json::array();
  for (int k = 0; k < 1000; ++k) deep = nlohmann::ordered_json::array({deep});
  EXPECT_ERROR_HAS(Value::from_json(deep), "nests deeper than");
  EXPECT_ERROR_HAS(Value::from_json(nlohmann::ordered_json(uint64_t(1) << 63)), "does not fit in 64 bits");
}

}  // namespace
}  // namespace hlwq::jinja
