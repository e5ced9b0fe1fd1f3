#include "agent/collectors/cloud/cloud_time.h"

#include <gtest/gtest.h>

namespace nodewatch::agent {
namespace {

TEST(CloudTime, Rfc3339AsAwsSendsIt) {
  EXPECT_EQ(*ParseRfc3339("2017-09-18T08:22:00Z"), 1505722920000);
  EXPECT_EQ(*ParseRfc3339("2017-09-18T08:22:00.250Z"), 1505722920000);
  EXPECT_FALSE(ParseRfc3339("2017-09-18 08:22:00").ok());
  EXPECT_FALSE(ParseRfc3339("2017-09-18T08:22:00Zjunk").ok());
  EXPECT_FALSE(ParseRfc3339("").ok());
}

TEST(CloudTime, AwsScheduledEventTime) {
  EXPECT_EQ(*ParseAwsEventTime("21 Jan 2019 09:00:43 GMT"), 1548061243000);
  EXPECT_FALSE(ParseAwsEventTime("2019-01-21T09:00:43Z").ok());
}

TEST(CloudTime, Rfc1123AsAzureSendsIt) {
  EXPECT_EQ(*ParseRfc1123("Mon, 19 Sep 2016 18:29:47 GMT"), 1474309787000);
  EXPECT_FALSE(ParseRfc1123("Mon, 19 Sep 2016").ok());
}

}  // namespace
}  // namespace nodewatch::agent
