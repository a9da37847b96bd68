// Jinja lexer + parser. The lexer turns the whole template into one token stream (text, tag delimiters and
// expression tokens), applying whitespace control to text as it goes; the parser is a recursive descent that
// mirrors Jinja2's own precedence levels (condexpr < or < and < not < compare < +,- < ~ < *,/,//,% < ** <
// unary < postfix/filter/test), so templates associate exactly as they do under Jinja2.
#include "runtime/jinja_parser.h"

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <set>

#include "core/error.h"
#include "runtime/utf8_stream.h"

namespace hlwq::jinja {

std::string jinja_position(const std::string& source, size_t pos) {
  size_t line = 1, col = 1;
  for (size_t k = 0; k < pos && k < source.size(); ++k) {
    if (source[k] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return fmt::format("line {}, column {}", line, col);
}

namespace {

struct Token {
  enum class Kind { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, End };
  Kind kind;
  std::string text;
  size_t pos = 0;
  int64_t i = 0;
  double f = 0.0;
};
using TK = Token::Kind;

StmtPtr make_stmt(Stmt::Kind kind, size_t pos) {
  auto s = std::make_unique<Stmt>();
  s->kind = kind;
  s->pos = pos;
  return s;
}

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

class Lexer {
 public:
  Lexer(const std::string& src, const std::string& origin) : src_(src), origin_(origin) {}

  std::vector<Token> run() {
    size_t n = src_.size();
    // keep_trailing_newline=False: Jinja drops one trailing newline of the template source.
    if (n > 0 && src_[n - 1] == '\n') n -= (n > 1 && src_[n - 2] == '\r') ? 2 : 1;
    size_t i = 0;
    bool strip_ws = false, trim_nl = false;
    while (i < n) {
      size_t j = i;
      while (j < n && !(src_[j] == '{' && j + 1 < n && (src_[j + 1] == '{' || src_[j + 1] == '%' || src_[j + 1] == '#')))
        ++j;
      size_t text_end = j;
      char kind = j < n ? src_[j + 1] : 0;
      char marker = (j < n && j + 2 < n && (src_[j + 2] == '-' || src_[j + 2] == '+')) ? src_[j + 2] : 0;
      if (j < n && kind != '{' && marker != '+' && marker != '-') {
        // lstrip_blocks: drop spaces/tabs between the start of the line and a {% or {# tag.
        size_t p = j;
        while (p > i && (src_[p - 1] == ' ' || src_[p - 1] == '\t')) --p;
        if ((p > i && src_[p - 1] == '\n') || (p == i && line_start_)) text_end = p;
      }
      std::string text = src_.substr(i, text_end - i);
      if (strip_ws) {
        size_t k = 0;
        while (k < text.size() && is_ws(text[k])) ++k;
        text.erase(0, k);
      } else if (trim_nl) {  // trim_blocks: one newline right after a block tag
        if (text.rfind("\r\n", 0) == 0) text.erase(0, 2);
        else if (!text.empty() && text[0] == '\n') text.erase(0, 1);
      }
      if (marker == '-')
        while (!text.empty() && is_ws(text.back())) text.pop_back();
      if (!text.empty()) out_.push_back({TK::Text, text, i});
      if (j >= n) break;
      strip_ws = trim_nl = false;
      size_t body = j + 2 + (marker ? 1 : 0);
      if (kind == '#') {
        size_t end = src_.find("#}", body);
        if (end == std::string::npos) error(j, "unterminated comment {# ... #}");
        if (src_[end - 1] == '-' && end - 1 >= body) strip_ws = true;
        else if (src_[end - 1] != '+') trim_nl = true;
        i = end + 2;
        line_start_ = false;
        continue;
      }
      bool block = kind == '%';
      out_.push_back({block ? TK::BlockBegin : TK::VarBegin, block ? "{%" : "{{", j});
      i = lex_tag(body, n, block, strip_ws, trim_nl);
      line_start_ = false;
    }
    out_.push_back({TK::End, "", n});
    return std::move(out_);
  }

 private:
  [[noreturn]] void error(size_t pos, const std::string& msg) {
    fail("chat template {} ({}): {}", origin_, jinja_position(src_, pos), msg);
  }

  // Lexes expression tokens up to and including the closing delimiter; returns the offset after it.
  size_t lex_tag(size_t i, size_t n, bool block, bool& strip_ws, bool& trim_nl) {
    int depth = 0;  // open { of dict literals, so "}}" inside {{ {'a': {}} }} is not taken as the end
    const char* close = block ? "%}" : "}}";
    while (true) {
      while (i < n && is_ws(src_[i])) ++i;
      if (i >= n) error(i, fmt::format("unterminated tag, expected '{}'", close));
      bool dash = src_[i] == '-' && src_.compare(i + 1, 2, close) == 0;
      bool plus = block && src_[i] == '+' && src_.compare(i + 1, 2, close) == 0;
      if ((depth == 0 || block) && (dash || plus || src_.compare(i, 2, close) == 0)) {
        out_.push_back({block ? TK::BlockEnd : TK::VarEnd, close, i});
        strip_ws = dash;
        trim_nl = block && !dash && !plus;
        return i + 2 + (dash || plus ? 1 : 0);
      }
      char c = src_[i];
      size_t start = i;
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        while (i < n && (std::isalnum(static_cast<unsigned char>(src_[i])) || src_[i] == '_')) ++i;
        out_.push_back({TK::Name, src_.substr(start, i - start), start});
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        lex_number(i, n);
      } else if (c == '\'' || c == '"') {
        i = lex_string(i, n);
      } else {
        static const char* const ops[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "|",
                                          ".",  ",",  ":",  "(",  ")",  "[",  "]", "{", "}", "<", ">", "="};
        const char* hit = nullptr;
        for (const char* op : ops)
          if (src_.compare(i, std::char_traits<char>::length(op), op) == 0) {
            hit = op;
            break;
          }
        if (!hit) error(i, fmt::format("unexpected character '{}' in tag", c));
        if (*hit == '{') ++depth;
        if (*hit == '}') --depth;
        out_.push_back({TK::Op, hit, i});
        i += std::char_traits<char>::length(hit);
      }
    }
  }

  void lex_number(size_t& i, size_t n) {
    size_t start = i;
    while (i < n && (std::isdigit(static_cast<unsigned char>(src_[i])) || src_[i] == '_')) ++i;
    bool is_float = false;
    if (i + 1 < n && src_[i] == '.' && std::isdigit(static_cast<unsigned char>(src_[i + 1]))) {
      is_float = true;
      ++i;
      while (i < n && std::isdigit(static_cast<unsigned char>(src_[i]))) ++i;
    }
    if (i < n && (src_[i] == 'e' || src_[i] == 'E')) {
      size_t k = i + 1;
      if (k < n && (src_[k] == '+' || src_[k] == '-')) ++k;
      if (k < n && std::isdigit(static_cast<unsigned char>(src_[k]))) {
        is_float = true;
        i = k;
        while (i < n && std::isdigit(static_cast<unsigned char>(src_[i]))) ++i;
      }
    }
    std::string digits;
    for (size_t k = start; k < i; ++k)
      if (src_[k] != '_') digits += src_[k];
    Token t{is_float ? TK::Float : TK::Int, digits, start};
    if (is_float) {
      t.f = std::strtod(digits.c_str(), nullptr);  // 1e999 is inf, as in Python
    } else {
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), t.i);
      if (ec != std::errc() || end != digits.data() + digits.size())
        error(start, fmt::format("integer literal {} does not fit in 64 bits", digits.size() > 40 ? digits.substr(0, 40) + "..." : digits));
    }
    out_.push_back(t);
  }

  size_t lex_string(size_t i, size_t n) {
    char q = src_[i];
    size_t start = i++;
    std::string s;
    while (true) {
      if (i >= n) error(start, "unterminated string literal");
      char c = src_[i++];
      if (c == q) break;
      if (c != '\\') {
        s += c;
        continue;
      }
      if (i >= n) error(start, "unterminated string literal");
      char e = src_[i++];
      switch (e) {
        case 'n': s += '\n'; break;
        case 't': s += '\t'; break;
        case 'r': s += '\r'; break;
        case '0': s += '\0'; break;
        case '\\': s += '\\'; break;
        case '\'': s += '\''; break;
        case '"': s += '"'; break;
        case '\n': break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          size_t len = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (i + len > n) error(i, "truncated \\" + std::string(1, e) + " escape");
          uint32_t cp = 0;
          auto [end, ec] = std::from_chars(src_.data() + i, src_.data() + i + len, cp, 16);
          if (ec != std::errc() || end != src_.data() + i + len)
            error(i, fmt::format("\\{} escape needs {} hex digits", e, len));
          if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            error(i, fmt::format("\\{} escape U+{:X} is not a Unicode scalar value", e, cp));
          utf8_append(s, char32_t(cp));
          i += len;
          break;
        }
        default:  // Python keeps unknown escapes verbatim
          s += '\\';
          s += e;
      }
    }
    out_.push_back({TK::String, s, start});
    return i;
  }

  const std::string& src_;
  const std::string& origin_;
  std::vector<Token> out_;
  bool line_start_ = true;  // the next text starts at the beginning of a line (template start)
};

class Parser {
 public:
  Parser(std::vector<Token> toks, const Template& t) : toks_(std::move(toks)), t_(t) {}

  Body parse_all() {
    auto [body, tag] = parse_body({});
    return std::move(body);
  }

  // Nesting units: each block statement, each expression entered, each `not`/unary prefix and each link of an
  // operator/attribute/filter chain. Chains deepen the tree without recursing here, but evaluating and
  // destroying the tree recurse along them, so they count too. Real chat templates use a few dozen.
  static constexpr int kMaxNesting = 256;

 private:
  // Restores the nesting count on scope exit; deepen() adds one unit.
  struct Scope {
    Parser& p;
    int saved;
    explicit Scope(Parser& parser) : p(parser), saved(parser.nesting_) {}
    ~Scope() { p.nesting_ = saved; }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
  };
  void deepen(size_t pos) {
    if (++nesting_ > kMaxNesting)
      error(pos, fmt::format("template nests deeper than {} levels (blocks, brackets, operator chains)", kMaxNesting));
  }

  const Token& peek(size_t k = 0) const { return toks_[std::min(idx_ + k, toks_.size() - 1)]; }
  const Token& next() { return toks_[std::min(idx_++, toks_.size() - 1)]; }
  bool at_op(const char* op, size_t k = 0) const { return peek(k).kind == TK::Op && peek(k).text == op; }
  bool at_name(const char* name, size_t k = 0) const { return peek(k).kind == TK::Name && peek(k).text == name; }
  bool accept_op(const char* op) { return at_op(op) ? (++idx_, true) : false; }
  bool accept_name(const char* name) { return at_name(name) ? (++idx_, true) : false; }

  [[noreturn]] void error(size_t pos, const std::string& msg) const {
    fail("chat template {} ({}): {}", t_.origin, jinja_position(t_.source, pos), msg);
  }
  std::string describe(const Token& t) const {
    switch (t.kind) {
      case TK::End: return "end of template";
      case TK::Text: return "text";
      case TK::String: return "string literal";
      default: return "'" + t.text + "'";
    }
  }
  void expect_op(const char* op) {
    if (!accept_op(op)) error(peek().pos, fmt::format("expected '{}', got {}", op, describe(peek())));
  }
  std::string expect_name(const char* what) {
    if (peek().kind != TK::Name) error(peek().pos, fmt::format("expected {}, got {}", what, describe(peek())));
    return next().text;
  }
  void expect_block_end(const std::string& tag) {
    if (peek().kind != TK::BlockEnd)
      error(peek().pos, fmt::format("expected '%}}' to close {{% {} %}}, got {}", tag, describe(peek())));
    ++idx_;
  }

  // Parses statements until a {% tag %} whose name is in `stops` (consumed up to and including the name).
  std::pair<Body, std::string> parse_body(const std::set<std::string>& stops) {
    Body body;
    while (true) {
      const Token& t = peek();
      if (t.kind == TK::End) {
        if (!stops.empty())
          error(t.pos, fmt::format("unexpected end of template, expected {{% {} %}}", *stops.rbegin()));
        return {std::move(body), ""};
      }
      if (t.kind == TK::Text) {
        auto s = make_stmt(Stmt::Kind::Text, t.pos);
        s->text = t.text;
        body.push_back(std::move(s));
        ++idx_;
        continue;
      }
      if (t.kind == TK::VarBegin) {
        ++idx_;
        auto s = make_stmt(Stmt::Kind::Output, t.pos);
        s->expr = parse_expression();
        if (peek().kind != TK::VarEnd) error(peek().pos, fmt::format("expected '}}}}', got {}", describe(peek())));
        ++idx_;
        body.push_back(std::move(s));
        continue;
      }
      if (t.kind != TK::BlockBegin) error(t.pos, fmt::format("unexpected {}", describe(t)));
      ++idx_;
      size_t pos = peek().pos;
      std::string tag = expect_name("a tag name");
      if (stops.count(tag)) return {std::move(body), tag};
      body.push_back(parse_statement(tag, pos));
    }
  }

  StmtPtr parse_statement(const std::string& tag, size_t pos) {
    Scope scope(*this);
    deepen(pos);
    if (tag == "if") return parse_if(pos);
    if (tag == "for") return parse_for(pos);
    if (tag == "set") return parse_set(pos);
    if (tag == "macro") return parse_macro(pos);
    if (tag == "break" || tag == "continue") {
      expect_block_end(tag);
      return make_stmt(tag == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue, pos);
    }
    if (tag == "generation") {  // transformers' AssistantTracker block: only marks spans, renders its body
      expect_block_end(tag);
      auto s = make_stmt(Stmt::Kind::Block, pos);
      s->body = parse_body({"endgeneration"}).first;
      expect_block_end("endgeneration");
      return s;
    }
    if (tag.starts_with("end") || tag == "elif" || tag == "else")
      error(pos, fmt::format("unexpected {{% {} %}} without a matching open block", tag));
    error(pos, fmt::format("unsupported tag {{% {} %}}", tag));
  }

  StmtPtr parse_if(size_t pos) {
    auto s = make_stmt(Stmt::Kind::If, pos);
    ExprPtr cond = parse_expression();
    expect_block_end("if");
    while (true) {
      auto [body, tag] = parse_body({"elif", "else", "endif"});
      s->branches.emplace_back(std::move(cond), std::move(body));
      if (tag == "elif") {
        cond = parse_expression();
        expect_block_end("elif");
        continue;
      }
      if (tag == "else") {
        expect_block_end("else");
        s->else_body = parse_body({"endif"}).first;
      }
      expect_block_end("endif");
      return s;
    }
  }

  StmtPtr parse_for(size_t pos) {
    auto s = make_stmt(Stmt::Kind::For, pos);
    s->names.push_back(expect_name("a loop variable"));
    while (accept_op(",")) s->names.push_back(expect_name("a loop variable"));
    if (!accept_name("in")) error(peek().pos, fmt::format("expected 'in' in for loop, got {}", describe(peek())));
    s->expr = parse_or();  // not parse_expression: a trailing `if` is the loop filter, not a conditional
    if (accept_name("if")) s->filter = parse_expression();
    if (at_name("recursive")) error(peek().pos, "unsupported construct: recursive for loop");
    expect_block_end("for");
    auto [body, tag] = parse_body({"else", "endfor"});
    s->body = std::move(body);
    if (tag == "else") {
      expect_block_end("else");
      s->else_body = parse_body({"endfor"}).first;
    }
    expect_block_end("endfor");
    return s;
  }

  StmtPtr parse_set(size_t pos) {
    std::string name = expect_name("a variable name");
    std::vector<std::string> names{name};
    if (accept_op(".")) names.push_back(expect_name("an attribute name"));
    if (at_op(",")) error(peek().pos, "unsupported construct: tuple assignment in set");
    if (peek().kind == TK::BlockEnd && names.size() == 1) {
      ++idx_;
      auto s = make_stmt(Stmt::Kind::SetBlock, pos);
      s->names = names;
      s->body = parse_body({"endset"}).first;
      expect_block_end("endset");
      return s;
    }
    expect_op("=");
    auto s = make_stmt(Stmt::Kind::Set, pos);
    s->names = names;
    s->expr = parse_expression();
    expect_block_end("set");
    return s;
  }

  StmtPtr parse_macro(size_t pos) {
    auto s = make_stmt(Stmt::Kind::Macro, pos);
    s->names.push_back(expect_name("a macro name"));
    expect_op("(");
    while (!accept_op(")")) {
      std::string p = expect_name("a parameter name");
      ExprPtr def = accept_op("=") ? parse_expression() : nullptr;
      s->params.emplace_back(p, std::move(def));
      if (!at_op(")")) expect_op(",");
    }
    expect_block_end("macro");
    s->body = parse_body({"endmacro"}).first;
    expect_block_end("endmacro");
    return s;
  }

  // ---- expressions ----

  ExprPtr node(Expr::Kind k, size_t pos) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->pos = pos;
    return e;
  }
  ExprPtr binary(const std::string& op, ExprPtr l, ExprPtr r, size_t pos) {
    ExprPtr e = node(Expr::Kind::Binary, pos);
    e->name = op;
    e->a = std::move(l);
    e->b = std::move(r);
    return e;
  }

  ExprPtr parse_expression() {
    size_t pos = peek().pos;
    Scope scope(*this);
    deepen(pos);
    ExprPtr e = parse_or();
    while (accept_name("if")) {
      deepen(pos);
      ExprPtr c = node(Expr::Kind::Cond, pos);
      c->a = std::move(e);
      c->b = parse_or();
      if (accept_name("else")) c->c = parse_expression();
      e = std::move(c);
    }
    return e;
  }

  ExprPtr parse_or() {
    size_t pos = peek().pos;
    Scope scope(*this);
    ExprPtr e = parse_and();
    while (accept_name("or")) {
      deepen(pos);
      e = binary("or", std::move(e), parse_and(), pos);
    }
    return e;
  }

  ExprPtr parse_and() {
    size_t pos = peek().pos;
    Scope scope(*this);
    ExprPtr e = parse_not();
    while (accept_name("and")) {
      deepen(pos);
      e = binary("and", std::move(e), parse_not(), pos);
    }
    return e;
  }

  ExprPtr parse_not() {
    size_t pos = peek().pos;
    if (accept_name("not")) {
      Scope scope(*this);
      deepen(pos);
      ExprPtr e = node(Expr::Kind::Unary, pos);
      e->name = "not";
      e->a = parse_not();
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    size_t pos = peek().pos;
    ExprPtr e = parse_math1();
    bool chained = false;
    while (true) {
      std::string op;
      if (peek().kind == TK::Op && (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
                                    peek().text == ">" || peek().text == "<=" || peek().text == ">=")) {
        op = next().text;
      } else if (accept_name("in")) {
        op = "in";
      } else if (at_name("not") && at_name("in", 1)) {
        idx_ += 2;
        op = "notin";
      } else {
        return e;
      }
      if (chained) error(pos, "unsupported construct: chained comparison (a < b < c)");
      chained = true;
      e = binary(op, std::move(e), parse_math1(), pos);
    }
  }

  ExprPtr parse_math1() {
    size_t pos = peek().pos;
    Scope scope(*this);
    ExprPtr e = parse_concat();
    while (at_op("+") || at_op("-")) {
      deepen(pos);
      std::string op = next().text;
      e = binary(op, std::move(e), parse_concat(), pos);
    }
    return e;
  }

  ExprPtr parse_concat() {
    size_t pos = peek().pos;
    Scope scope(*this);
    ExprPtr e = parse_math2();
    while (accept_op("~")) {
      deepen(pos);
      e = binary("~", std::move(e), parse_math2(), pos);
    }
    return e;
  }

  ExprPtr parse_math2() {
    size_t pos = peek().pos;
    Scope scope(*this);
    ExprPtr e = parse_pow();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      deepen(pos);
      std::string op = next().text;
      e = binary(op, std::move(e), parse_pow(), pos);
    }
    return e;
  }

  ExprPtr parse_pow() {
    size_t pos = peek().pos;
    Scope scope(*this);
    ExprPtr e = parse_unary(true);
    while (accept_op("**")) {
      deepen(pos);
      e = binary("**", std::move(e), parse_unary(true), pos);
    }
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    size_t pos = peek().pos;
    ExprPtr e;
    Scope scope(*this);
    if (at_op("-") || at_op("+")) {
      deepen(pos);
      e = node(Expr::Kind::Unary, pos);
      e->name = next().text;
      e->a = parse_unary(false);
    } else {
      e = parse_postfix(parse_primary());
    }
    return with_filter ? parse_filter_expr(std::move(e)) : std::move(e);
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    size_t pos = t.pos;
    if (t.kind == TK::Name) {
      ++idx_;
      ExprPtr e = node(Expr::Kind::Literal, pos);
      if (t.text == "true" || t.text == "True") e->value = Value::boolean(true);
      else if (t.text == "false" || t.text == "False") e->value = Value::boolean(false);
      else if (t.text == "none" || t.text == "None") e->value = Value::none();
      else {
        e->kind = Expr::Kind::Name;
        e->name = t.text;
      }
      return e;
    }
    if (t.kind == TK::String) {
      std::string s;
      while (peek().kind == TK::String) s += next().text;  // adjacent literals concatenate
      ExprPtr e = node(Expr::Kind::Literal, pos);
      e->value = Value::string(std::move(s));
      return e;
    }
    if (t.kind == TK::Int || t.kind == TK::Float) {
      ++idx_;
      ExprPtr e = node(Expr::Kind::Literal, pos);
      e->value = t.kind == TK::Int ? Value::integer(t.i) : Value::number(t.f);
      return e;
    }
    if (accept_op("(")) {
      if (accept_op(")")) return node(Expr::Kind::TupleLit, pos);
      ExprPtr first = parse_expression();
      if (!at_op(",")) {
        expect_op(")");
        return first;
      }
      ExprPtr e = node(Expr::Kind::TupleLit, pos);
      e->args.push_back(std::move(first));
      while (accept_op(",") && !at_op(")")) e->args.push_back(parse_expression());
      expect_op(")");
      return e;
    }
    if (accept_op("[")) {
      ExprPtr e = node(Expr::Kind::ListLit, pos);
      while (!accept_op("]")) {
        e->args.push_back(parse_expression());
        if (!at_op("]")) expect_op(",");
      }
      return e;
    }
    if (accept_op("{")) {
      ExprPtr e = node(Expr::Kind::DictLit, pos);
      while (!accept_op("}")) {
        e->args.push_back(parse_expression());
        expect_op(":");
        e->args.push_back(parse_expression());
        if (!at_op("}")) expect_op(",");
      }
      return e;
    }
    error(pos, fmt::format("unexpected {} in expression", describe(t)));
  }

  ExprPtr parse_postfix(ExprPtr e) {
    Scope scope(*this);
    while (true) {
      size_t pos = peek().pos;
      if (at_op(".") || at_op("[") || at_op("(")) deepen(pos);
      if (accept_op(".")) {
        ExprPtr a = node(Expr::Kind::Attr, pos);
        if (peek().kind == TK::Int) {  // x.0 is x[0] in Jinja
          a->kind = Expr::Kind::Index;
          a->b = node(Expr::Kind::Literal, pos);
          a->b->value = Value::integer(next().i);
        } else {
          a->name = expect_name("an attribute name");
        }
        a->a = std::move(e);
        e = std::move(a);
      } else if (accept_op("[")) {
        e = parse_subscript(std::move(e), pos);
      } else if (at_op("(")) {
        e = parse_call(std::move(e), pos);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj, size_t pos) {
    ExprPtr parts[3];
    int n = 0;
    bool slice = false;
    while (true) {
      if (!at_op(":") && !at_op("]")) parts[n] = parse_expression();
      if (accept_op(":")) {
        slice = true;
        if (++n > 2) error(peek().pos, "too many ':' in slice");
        continue;
      }
      expect_op("]");
      break;
    }
    // `x[]` is a syntax error in Jinja as in Python; an Index without its index expression would be evaluated
    // through a null pointer (fuzz_chat_template finding).
    if (!slice && !parts[0]) error(pos, "empty subscript: expected an index or a slice inside '[]'");
    ExprPtr e = node(slice ? Expr::Kind::Slice : Expr::Kind::Index, pos);
    e->a = std::move(obj);
    if (slice) {
      e->args.resize(3);
      for (int k = 0; k < 3; ++k) e->args[size_t(k)] = std::move(parts[k]);
    } else {
      e->b = std::move(parts[0]);
    }
    return e;
  }

  void parse_args(Expr& e) {
    expect_op("(");
    while (!accept_op(")")) {
      if (peek().kind == TK::Name && at_op("=", 1)) {
        std::string k = next().text;
        ++idx_;
        e.kwargs.emplace_back(k, parse_expression());
      } else {
        e.args.push_back(parse_expression());
      }
      if (!at_op(")")) expect_op(",");
    }
  }

  ExprPtr parse_call(ExprPtr callee, size_t pos) {
    ExprPtr e = node(Expr::Kind::Call, pos);
    e->a = std::move(callee);
    parse_args(*e);
    return e;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    static const std::set<std::string> kNoArg{"and", "or", "not", "in", "is", "if", "else"};
    Scope scope(*this);
    while (true) {
      size_t pos = peek().pos;
      if (at_op("|") || at_name("is")) deepen(pos);
      if (accept_op("|")) {
        ExprPtr f = node(Expr::Kind::Filter, pos);
        f->name = expect_name("a filter name");
        f->a = std::move(e);
        if (at_op("(")) parse_args(*f);
        e = std::move(f);
      } else if (accept_name("is")) {
        ExprPtr t = node(Expr::Kind::Test, pos);
        t->negated = accept_name("not");
        t->name = expect_name("a test name");
        t->a = std::move(e);
        const Token& nx = peek();
        if (at_op("(")) {
          parse_args(*t);
        } else if (nx.kind == TK::String || nx.kind == TK::Int || nx.kind == TK::Float ||
                   (nx.kind == TK::Name && !kNoArg.count(nx.text))) {
          t->args.push_back(parse_postfix(parse_primary()));  // `x is sameas false`, `n is divisibleby 3`
        }
        e = std::move(t);
      } else {
        return e;
      }
    }
  }

  std::vector<Token> toks_;
  size_t idx_ = 0;
  const Template& t_;
  int nesting_ = 0;
};

}  // namespace

std::shared_ptr<const Template> parse_template(std::string source, const std::string& origin) {
  // Real chat templates are a few KB to a few hundred KB.
  constexpr size_t kMaxTemplateBytes = size_t(4) << 20;
  HLWQ_CHECK(source.size() <= kMaxTemplateBytes, "chat template {}: {} bytes is over the {} byte limit", origin,
             source.size(), kMaxTemplateBytes);
  auto t = std::make_shared<Template>();
  t->origin = origin;
  t->source = std::move(source);
  std::vector<Token> toks = Lexer(t->source, t->origin).run();
  t->body = Parser(std::move(toks), *t).parse_all();
  return t;
}

}  // namespace hlwq::jinja
