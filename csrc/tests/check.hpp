// The no-framework harness of the C++ unit tests in csrc/tests: every CHECK is counted,
// failures are printed (file:line, the expression, the message), and main() returns 1 if
// any failed. Header only, plain C++17, no Python; each test program includes it once.
//
//   CHECK(cond)                        CHECK_MSG(cond, std::string message)
//   CHECK_THROWS(E, statements)        the statements throw E or a subclass of it
//   CHECK_THROWS_EXACTLY(E, stmts)     ... E itself, not a subclass
//   run("name", f)                     f() with its failures and exceptions reported
//   Rng rng(seed)                      splitmix64: deterministic on every platform
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <string>
#include <typeinfo>

namespace wz_test {

inline int g_checks = 0, g_failures = 0;

inline void check(bool ok, const char* expr, const char* file, int line, const std::string& what) {
  ++g_checks;
  if (ok) return;
  ++g_failures;
  std::fprintf(stderr, "%s:%d: CHECK failed: %s%s%s\n", file, line, expr,
               what.empty() ? "" : "  -- ", what.c_str());
}

// Whether f throws E (or a subclass); with exact, E itself and no subclass.
template <class E>
bool throws(const std::function<void()>& f, bool exact = false) {
  try {
    f();
  } catch (const E& e) {
    return !exact || typeid(e) == typeid(E);
  } catch (...) {
    return false;
  }
  return false;
}

// Runs one group of checks and prints "name ok" or "name FAILED" (the name padded to width);
// an exception escaping f counts as a failure.
inline void run(const char* name, void (*f)(), int width = 24) {
  const int before = g_failures;
  try {
    f();
  } catch (const std::exception& e) {
    ++g_failures;
    std::fprintf(stderr, "%s: unexpected exception: %s\n", name, e.what());
  }
  std::printf("%-*s %s\n", width, name, g_failures == before ? "ok" : "FAILED");
}

// splitmix64: deterministic everywhere.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  uint32_t below(uint32_t n) { return uint32_t(next() % n); }
  int32_t range(int32_t lo, int32_t hi) { return lo + int32_t(below(uint32_t(hi - lo + 1))); }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }
  double normal() {
    const double u = std::max(uniform(), 1e-300), v = uniform();
    return std::sqrt(-2 * std::log(u)) * std::cos(6.283185307179586 * v);
  }
};

}  // namespace wz_test

#define CHECK(cond) ::wz_test::check(bool(cond), #cond, __FILE__, __LINE__, "")
#define CHECK_MSG(cond, msg) ::wz_test::check(bool(cond), #cond, __FILE__, __LINE__, (msg))
// throws is named unqualified (the test files say `using namespace wz_test;`) so that a
// failure prints the expression as "throws<E>([&] { ... })".
#define CHECK_THROWS(E, ...) CHECK_MSG(throws<E>([&] { __VA_ARGS__; }), #E)
#define CHECK_THROWS_EXACTLY(E, ...) CHECK_MSG(throws<E>([&] { __VA_ARGS__; }, true), #E " exactly")
