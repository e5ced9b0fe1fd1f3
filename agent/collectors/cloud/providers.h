// Factories of the individual providers (internal to agent/collectors/cloud).
#pragma once

#include "agent/collectors/cloud/provider_base.h"

namespace nodewatch::agent {

std::unique_ptr<CloudProvider> MakeAwsProvider(const CloudOptions&, HttpClient&, const Clock&,
                                               CloudCounters&);
std::unique_ptr<CloudProvider> MakeGcpProvider(const CloudOptions&, HttpClient&, const Clock&,
                                               CloudCounters&);
std::unique_ptr<CloudProvider> MakeAzureProvider(const CloudOptions&, HttpClient&, const Clock&,
                                                 CloudCounters&);
std::unique_ptr<CloudProvider> MakeDigitalOceanProvider(const CloudOptions&, HttpClient&,
                                                        const Clock&, CloudCounters&);

}  // namespace nodewatch::agent
