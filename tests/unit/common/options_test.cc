#include "common/options.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

namespace nodewatch {
namespace {

using ::testing::HasSubstr;

struct Sample {
  std::string name = "default";
  int64_t count = 3;
  bool flag = false;
  int64_t interval_ms = 10'000;
  uint64_t bytes = 1024;
  std::vector<std::string> list = {"a"};
};

OptionSet MakeOptions(Sample* s) {
  OptionSet o("test", "test options");
  o.AddString("name", &s->name, "a name");
  o.AddInt("count", &s->count, "a count", 1, 10);
  o.AddBool("flag", &s->flag, "a flag");
  o.AddDuration("interval", &s->interval_ms, "an interval");
  o.AddBytes("bytes", &s->bytes, "a size");
  o.AddStringList("item", &s->list, "items");
  return o;
}

absl::StatusOr<std::vector<std::string>> ParseArgs(OptionSet& o, std::vector<std::string> args) {
  std::vector<const char*> argv = {"test"};
  for (auto& a : args) argv.push_back(a.c_str());
  return o.Parse(static_cast<int>(argv.size()), argv.data());
}

TEST(ParseDurationMs, Units) {
  EXPECT_EQ(*ParseDurationMs("250ms"), 250);
  EXPECT_EQ(*ParseDurationMs("10s"), 10'000);
  EXPECT_EQ(*ParseDurationMs("5m"), 300'000);
  EXPECT_EQ(*ParseDurationMs("6h"), 6 * 3600'000);
  EXPECT_EQ(*ParseDurationMs("14d"), 14LL * 86400'000);
  EXPECT_EQ(*ParseDurationMs("1.5s"), 1500);
  EXPECT_THAT(ParseDurationMs("10").status().message(), HasSubstr("not a duration"));
  EXPECT_FALSE(ParseDurationMs("s").ok());
  EXPECT_FALSE(ParseDurationMs("-1s").ok());
  EXPECT_FALSE(ParseDurationMs("99999999999999d").ok());
}

TEST(FormatElapsed, RoundsForPeople) {
  EXPECT_EQ(FormatElapsed(-5), "0s");
  EXPECT_EQ(FormatElapsed(41'900), "41s");
  EXPECT_EQ(FormatElapsed(192'000), "3m12s");
  EXPECT_EQ(FormatElapsed(7'500'000), "2h05m");
  EXPECT_EQ(FormatElapsed((3 * 24 + 4) * 3'600'000LL + 59'000), "3d04h");
}

TEST(ParseBytes, Units) {
  EXPECT_EQ(*ParseBytes("256MiB"), 256ull << 20);
  EXPECT_EQ(*ParseBytes("4KiB"), 4096u);
  EXPECT_EQ(*ParseBytes("1000"), 1000u);
  EXPECT_FALSE(ParseBytes("12XB").ok());
}

TEST(OptionSet, DefaultsStayWithoutInput) {
  Sample s;
  auto o = MakeOptions(&s);
  ASSERT_TRUE(ParseArgs(o, {}).ok());
  EXPECT_EQ(s.name, "default");
  EXPECT_EQ(s.count, 3);
}

TEST(OptionSet, FlagsInBothForms) {
  Sample s;
  auto o = MakeOptions(&s);
  auto pos = ParseArgs(o, {"--name=x", "--count", "7", "--flag", "cmd", "--interval", "2m",
                           "--bytes=2KiB", "--item", "p", "--item=q"});
  ASSERT_TRUE(pos.ok()) << pos.status();
  EXPECT_EQ(s.name, "x");
  EXPECT_EQ(s.count, 7);
  EXPECT_TRUE(s.flag);
  EXPECT_EQ(s.interval_ms, 120'000);
  EXPECT_EQ(s.bytes, 2048u);
  EXPECT_THAT(s.list, ::testing::ElementsAre("p", "q"));
  EXPECT_THAT(*pos, ::testing::ElementsAre("cmd"));
}

TEST(OptionSet, ErrorsNameTheFlag) {
  Sample s;
  auto o = MakeOptions(&s);
  EXPECT_THAT(ParseArgs(o, {"--count=11"}).status().message(), HasSubstr("--count"));
  EXPECT_THAT(ParseArgs(o, {"--nope"}).status().message(), HasSubstr("unknown flag --nope"));
  EXPECT_THAT(ParseArgs(o, {"--name"}).status().message(), HasSubstr("needs a value"));
  EXPECT_THAT(ParseArgs(o, {"--flag=maybe"}).status().message(), HasSubstr("--flag"));
}

TEST(OptionSet, YamlThenFlagsOverride) {
  Sample s;
  auto o = MakeOptions(&s);
  std::string path = ::testing::TempDir() + "/options_test.yaml";
  std::ofstream(path) << "name: fromfile\ncount: 5\nitem: [x, y]\ninterval: 30s\n";
  ASSERT_TRUE(ParseArgs(o, {"--count=9", "--config", path}).ok());
  EXPECT_EQ(s.name, "fromfile");
  EXPECT_EQ(s.count, 9);  // the flag wins wherever it stands
  EXPECT_EQ(s.interval_ms, 30'000);
  EXPECT_THAT(s.list, ::testing::ElementsAre("x", "y"));
}

TEST(OptionSet, YamlErrorsNameTheKey) {
  Sample s;
  auto o = MakeOptions(&s);
  EXPECT_THAT(o.ApplyYaml("bogus: 1\n", "f.yaml").message(), HasSubstr("unknown key 'bogus'"));
  EXPECT_THAT(o.ApplyYaml("count: 99\n", "f.yaml").message(), HasSubstr("key 'count'"));
  EXPECT_THAT(o.ApplyYaml("interval: soon\n", "f.yaml").message(), HasSubstr("key 'interval'"));
  EXPECT_THAT(o.ApplyYaml("name: [1, 2]\n", "f.yaml").message(), HasSubstr("key 'name'"));
  EXPECT_THAT(o.ApplyYaml("- a\n- b\n", "f.yaml").message(), HasSubstr("mapping"));
  EXPECT_THAT(o.ApplyYaml("name: [unclosed\n", "f.yaml").message(), HasSubstr("not valid YAML"));
  EXPECT_THAT(ParseArgs(o, {"--config", "/nonexistent/x.yaml"}).status().message(),
              HasSubstr("cannot read"));
}

TEST(OptionSet, HelpListsEveryOption) {
  Sample s;
  auto o = MakeOptions(&s);
  ASSERT_TRUE(ParseArgs(o, {"--help"}).ok());
  EXPECT_TRUE(o.help_requested());
  for (const char* name : {"--name", "--count", "--flag", "--interval", "--bytes", "--item"}) {
    EXPECT_THAT(o.Help(), HasSubstr(name));
  }
  EXPECT_THAT(o.Help(), HasSubstr("default: 10s"));
}

}  // namespace
}  // namespace nodewatch
