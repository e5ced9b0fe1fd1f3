#include "aggregator/aggregator.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/tls.h"

namespace nodewatch::aggregator {
namespace {

void ApplyIngestServerOptions(grpc::ServerBuilder& builder, const AggregatorConfig& config) {
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.max_message_bytes));
  builder.SetMaxSendMessageSize(4 << 20);
  // Keepalive policy matching the agents' 60 s pings (reference §1.4).
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 120'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 30'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  // Periodic reconnects spread agents across replicas and exercise the resume path.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, 30 * 60 * 1000);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, 30'000);
}

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  ASSIGN_OR_RETURN(std::string token, ReadFileToString(path));
  token = std::string(absl::StripAsciiWhitespace(token));
  if (token.size() < 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("operator-token-file '", path, "': token must be at least 16 characters"));
  }
  return token;
}

absl::StatusOr<KubeConnection> ResolveKubeConnection(const RemediationConfig& r) {
  KubeConnection conn;
  if (!r.kubeconfig.empty() || r.kube_api_server.empty()) {
    ASSIGN_OR_RETURN(conn, LoadKubeConnection(r.kubeconfig));
  }
  if (!r.kube_api_server.empty()) {
    conn.server = r.kube_api_server;
    conn.source = "--kube-api-server";
  }
  if (!r.kube_token_file.empty()) conn.token_file = r.kube_token_file;
  if (!r.lease_namespace.empty()) conn.ns = r.lease_namespace;
  return conn;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Aggregator>> Aggregator::Start(const AggregatorConfig& config,
                                                              const Clock& clock) {
  RETURN_IF_ERROR(ValidateAggregatorConfig(config));
  auto log = GetLogger("agg");
  std::unique_ptr<Aggregator> agg(new Aggregator());
  RETURN_IF_ERROR(MakeDirs(config.data_dir));
  ASSIGN_OR_RETURN(agg->store_, OpenRocksDbStore({.path = config.data_dir + "/db",
                                                  .retention_ms = config.retention_ms}));
  agg->engine_ = std::make_unique<IngestEngine>(*agg->store_, clock);
  RETURN_IF_ERROR(agg->StartCost(config, clock));
  agg->signals_ = std::make_unique<NodeSignals>(clock);
  agg->engine_->AddRecordTap(agg->signals_.get());
  if (config.remediation.mode != "off") {
    auto conn = ResolveKubeConnection(config.remediation);
    if (!conn.ok() && config.remediation.mode == "on") {
      return absl::FailedPreconditionError(
          absl::StrCat("remediation: on, but ", conn.status().message()));
    }
    if (!conn.ok()) {
      log->info("remediation off: {}", std::string(conn.status().message()));
    } else {
      log->info("remediation: Kubernetes API {} ({}), Lease {}/{}", conn->server, conn->source,
                conn->ns, config.remediation.lease_name);
      RemediationConfig remediation = config.remediation;
      remediation.lease_namespace = conn->ns;
      ASSIGN_OR_RETURN(auto policies, ParsePolicies(remediation.policies));
      agg->kube_client_ = MakeCurlKubeClient(*conn);
      agg->kube_api_ = std::make_unique<KubeApi>(*agg->kube_client_);
      Aggregator* self = agg.get();
      agg->remediator_ = std::make_unique<Remediator>(
          Remediator::Deps{.api = agg->kube_api_.get(),
                           .store = agg->store_.get(),
                           .engine = agg->engine_.get(),
                           .clock = &clock,
                           .send_command =
                               [self](const std::string& node, const nodewatch::v1::Command& c) {
                                 return self->ingest_ ? self->SendCommand(node, c) : 0;
                               }},
          std::move(remediation), std::move(policies));
      Remediator* remediator = agg->remediator_.get();
      agg->engine_->SetNoticeListener(
          [remediator](const std::string& node, const nodewatch::v1::NodeInfo&,
                       const nodewatch::v1::InterruptionNotice& notice) {
            remediator->OnNotice(node, notice);
          });
      agg->engine_->SetBootListener(
          [remediator](const IngestEngine::NodeBoot& boot) { remediator->OnBoot(boot); });
    }
  }
  RETURN_IF_ERROR(agg->engine_->Start());
  if (agg->remediator_) RETURN_IF_ERROR(agg->remediator_->Start());
  agg->cost_monitor_->Start();

  QueryOptions query_options;
  if (!config.operator_token_file.empty()) {
    ASSIGN_OR_RETURN(query_options.bearer_token, ReadToken(config.operator_token_file));
  }
  std::shared_ptr<grpc::ServerCredentials> ingest_creds;
  std::shared_ptr<grpc::ServerCredentials> query_creds;
  if (config.insecure) {
    log->warn(
        "--insecure: listeners are plaintext and agents are not authenticated; for local "
        "demos only");
    ingest_creds = grpc::InsecureServerCredentials();
    query_creds = grpc::InsecureServerCredentials();
    query_options.allow_unauthenticated = query_options.bearer_token.empty();
  } else {
    TlsFiles files{config.tls_ca, config.tls_cert, config.tls_key};
    ASSIGN_OR_RETURN(ingest_creds,
                     MakeServerCredentials(files, ClientCertPolicy::kRequireAndVerify));
    ASSIGN_OR_RETURN(query_creds,
                     MakeServerCredentials(files, ClientCertPolicy::kRequestAndVerify));
  }

  agg->ingest_ = std::make_unique<IngestService>(*agg->engine_, config.insecure,
                                                 static_cast<size_t>(config.max_streams));
  grpc::ServerBuilder ingest_builder;
  ingest_builder.AddListeningPort(config.listen, ingest_creds, &agg->ingest_port_);
  ingest_builder.RegisterService(agg->ingest_.get());
  ApplyIngestServerOptions(ingest_builder, config);
  agg->ingest_server_ = ingest_builder.BuildAndStart();
  if (!agg->ingest_server_ || agg->ingest_port_ == 0) {
    return absl::UnavailableError(absl::StrCat("listen: cannot listen on '", config.listen, "'"));
  }

  agg->query_ = std::make_unique<QueryService>(*agg->engine_, *agg->store_, clock,
                                               agg->cost_monitor_.get(), query_options);
  grpc::ServerBuilder query_builder;
  query_builder.AddListeningPort(config.query_listen, query_creds, &agg->query_port_);
  query_builder.RegisterService(agg->query_.get());
  agg->query_server_ = query_builder.BuildAndStart();
  if (!agg->query_server_ || agg->query_port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("query-listen: cannot listen on '", config.query_listen, "'"));
  }
  if (!config.http_listen.empty()) {
    ASSIGN_OR_RETURN(agg->http_,
                     HttpApi::Start({.listen = config.http_listen,
                                     .tls = !config.insecure,
                                     .tls_files = {config.tls_ca, config.tls_cert, config.tls_key}},
                                    *agg->query_, *agg->engine_, clock));
  }
  if (!config.metrics_listen.empty()) {
    ASSIGN_OR_RETURN(agg->metrics_,
                     StartAggregatorMetrics(config.metrics_listen, *agg->engine_, *agg->ingest_,
                                            *agg->query_, *agg->store_, agg->remediator_.get(),
                                            agg->cost_monitor_.get(), agg->signals_.get(), clock));
  }
  log->info(
      "nodewatch-aggregator {}: agents on port {}, operators on port {} (JSON on {}), metrics on "
      "port {}, store {}/db",
      NODEWATCH_VERSION, agg->ingest_port_, agg->query_port_, agg->http_port(), agg->metrics_port(),
      config.data_dir);
  return agg;
}

absl::Status Aggregator::StartCost(const AggregatorConfig& config, const Clock& clock) {
  const CostConfig& c = config.cost;
  if (!c.price_table.empty()) {
    ASSIGN_OR_RETURN(PriceTable table, PriceTable::LoadFile(c.price_table));
    prices_ = std::make_unique<PriceTable>(std::move(table));
  } else {
    prices_ = std::make_unique<PriceTable>(PriceTable::BuiltIn());
  }
  std::vector<CidrOverride> overrides;
  for (const auto& spec : c.transfer_cidrs) {
    ASSIGN_OR_RETURN(CidrOverride o, ParseCidrOverride(spec));
    overrides.push_back(std::move(o));
  }
  classifier_ = std::make_unique<TransferClassifier>(std::move(overrides));
  ledger_ = std::make_unique<CostLedger>(*classifier_, CostLedgerOptions{});
  RETURN_IF_ERROR(ledger_->Load(*store_, clock.NowUnixMs()));
  engine_->AddRecordTap(ledger_.get());
  alert_webhook_ = std::make_unique<Webhook>(WebhookOptions{
      .url = c.webhook_url, .body_template = c.webhook_template, .headers = c.webhook_headers});
  alerts_ = std::make_unique<AlertEngine>(*store_, alert_webhook_.get(), c.alerts);
  RETURN_IF_ERROR(alerts_->Load());
  cost_monitor_ = std::make_unique<CostMonitor>(*engine_, *store_, clock, *prices_, *ledger_,
                                                *classifier_, *alerts_, c.monitor);
  GetLogger("agg.cost")
      ->info("prices: {} ({} instance types); {} transfer override(s)", prices_->origin(),
             prices_->instance_count(), c.transfer_cidrs.size());
  return absl::OkStatus();
}

Aggregator::~Aggregator() { Shutdown(); }

void Aggregator::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(5);
  if (ingest_server_) ingest_server_->Shutdown(deadline);
  if (query_server_) query_server_->Shutdown(deadline);
  http_.reset();
  if (cost_monitor_) cost_monitor_->Stop();
  if (remediator_) remediator_->Stop();
  if (engine_) engine_->Stop();
  metrics_.reset();
}

}  // namespace nodewatch::aggregator
