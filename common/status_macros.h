// Local stand-ins for ABSL_RETURN_IF_ERROR / ABSL_ASSIGN_OR_RETURN, which Debian bookworm's Abseil
// (20220623) does not have. Same names minus the ABSL_ prefix, so migrating is a rename.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define NW_STATUS_CONCAT_INNER(a, b) a##b
#define NW_STATUS_CONCAT(a, b) NW_STATUS_CONCAT_INNER(a, b)

// Returns the status from the enclosing function if `expr` is not OK.
#define RETURN_IF_ERROR(expr)                                    \
  do {                                                           \
    ::absl::Status nw_status_ = (expr);                          \
    if (!nw_status_.ok()) return nw_status_;                     \
  } while (false)

// `ASSIGN_OR_RETURN(auto x, MakeX());` declares x from a StatusOr or returns its error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  NW_ASSIGN_OR_RETURN_IMPL(NW_STATUS_CONCAT(nw_statusor_, __LINE__), lhs, expr)
#define NW_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()
