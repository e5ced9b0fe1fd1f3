// Packaging: the Talos system extension image (`make talos-extension`): built twice to the same
// digest, its OCI layout and layer tars complete, the flattened tree obeying every rule Talos and
// the extensions validator enforce (reference/packaging.md §1.1–1.2), and the agent running from
// the container rootfs alone in a chroot, streaming to a real aggregator. And the aggregator's
// image (`make image`): self-contained, non-root.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "common/file_util.h"
#include "nlohmann/json.hpp"
#include "tests/integration/harness.h"

namespace nodewatch::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kName = "nodewatch-agent";

// Runs scripts/<script> BINARY OUT; returns the manifest digest the script printed.
std::string BuildWith(const std::string& script, const std::string& binary,
                      const std::string& out) {
  Subprocess build(
      "/bin/bash",
      {std::string(NODEWATCH_SOURCE_DIR) + "/scripts/" + script, BinaryPath(binary), out},
      out + ".log");
  build.Start();
  EXPECT_EQ(build.Stop(0), 0) << build.log();
  std::string log = build.log();
  auto at = log.rfind("sha256:");
  return at == std::string::npos ? "" : log.substr(at, 71);
}

std::string BuildExtension(const std::string& out) {
  return BuildWith("build-talos-extension.sh", "nodewatch-agent", out);
}

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  std::string hex;
  char buf[3];
  for (unsigned char b : digest) {
    std::snprintf(buf, sizeof buf, "%02x", b);
    hex += buf;
  }
  return hex;
}

std::string ReadBlob(const std::string& layout, const std::string& digest) {
  auto data = ReadFileToString(layout + "/blobs/sha256/" + digest.substr(7));
  EXPECT_TRUE(data.ok()) << digest;
  if (!data.ok()) return "";
  EXPECT_EQ("sha256:" + Sha256Hex(*data), digest) << "blob content does not match its digest";
  return *data;
}

// Unpacks the image's single layer into `root` (what `crane export` gives Talos).
void Unpack(const std::string& layout, const std::string& root) {
  json index = json::parse(ReadFileToString(layout + "/index.json").value());
  ASSERT_EQ(index["manifests"].size(), 1u);
  const json& desc = index["manifests"][0];
  // The Talos imager skips descriptors without a platform.
  EXPECT_EQ(desc["platform"]["os"], "linux");
  EXPECT_FALSE(desc["platform"].value("architecture", "").empty());
  json manifest = json::parse(ReadBlob(layout, desc["digest"]));
  json config = json::parse(ReadBlob(layout, manifest["config"]["digest"]));
  EXPECT_EQ(config["os"], "linux");
  ASSERT_EQ(manifest["layers"].size(), 1u);
  const std::string layer = manifest["layers"][0]["digest"];
  ReadBlob(layout, layer);
  fs::create_directories(root);
  // tar fails on a truncated archive (the umoci pitfall of §2): a complete layer is required.
  Subprocess tar("/bin/tar", {"-xzf", layout + "/blobs/sha256/" + layer.substr(7), "-C", root},
                 root + ".tar.log");
  tar.Start();
  ASSERT_EQ(tar.Stop(0), 0) << tar.log();
}

bool Under(const std::string& path, const std::vector<std::string>& prefixes) {
  for (const auto& p : prefixes) {
    if (path == p || path.rfind(p + "/", 0) == 0) return true;
  }
  return false;
}

void ExpectOnlyKeys(const YAML::Node& map, const std::set<std::string>& known,
                    const std::string& where) {
  ASSERT_TRUE(map.IsMap()) << where << " is not a map";
  for (const auto& kv : map) {
    EXPECT_TRUE(known.count(kv.first.as<std::string>()))
        << where << ": unknown key '" << kv.first.as<std::string>()
        << "' (Talos ignores it silently)";
  }
}

void ValidateTree(const std::string& root) {
  // Only manifest.yaml and rootfs/ at the top (Talos: `unexpected file`).
  std::set<std::string> top;
  for (const auto& e : fs::directory_iterator(root)) top.insert(e.path().filename());
  EXPECT_EQ(top, (std::set<std::string>{"manifest.yaml", "rootfs"}));

  // rootfs: regular files, directories and symlinks only; nothing world-writable; every
  // non-directory under an allowed prefix.
  const std::vector<std::string> allowed = {"/usr/local", "/etc/cri/conf.d", "/usr/lib/firmware",
                                            "/usr/lib/modules"};
  int files = 0;
  for (const auto& e : fs::recursive_directory_iterator(root + "/rootfs")) {
    struct stat st {};
    ASSERT_EQ(lstat(e.path().c_str(), &st), 0);
    const std::string rel = "/" + fs::relative(e.path(), root + "/rootfs").string();
    EXPECT_TRUE(S_ISDIR(st.st_mode) || S_ISREG(st.st_mode) || S_ISLNK(st.st_mode))
        << rel << " is a special file";
    EXPECT_EQ(st.st_mode & S_IWOTH, 0u) << rel << " is world-writable";
    if (!S_ISDIR(st.st_mode)) {
      ++files;
      EXPECT_TRUE(Under(rel, allowed)) << rel << " is outside the allowed paths";
    }
  }
  EXPECT_GT(files, 10);

  YAML::Node manifest = YAML::LoadFile(root + "/manifest.yaml");
  ExpectOnlyKeys(manifest, {"version", "metadata"}, "manifest.yaml");
  EXPECT_EQ(manifest["version"].as<std::string>(), "v1alpha1");
  const YAML::Node meta = manifest["metadata"];
  ExpectOnlyKeys(meta, {"name", "version", "author", "description", "compatibility", "extraInfo"},
                 "metadata");
  EXPECT_EQ(meta["name"].as<std::string>(), kName);
  EXPECT_TRUE(std::regex_match(meta["version"].as<std::string>(),
                               std::regex(R"(v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?)")))
      << meta["version"].as<std::string>();
  EXPECT_FALSE(meta["author"].as<std::string>().empty());
  EXPECT_FALSE(meta["description"].as<std::string>().empty());
  EXPECT_TRUE(std::regex_match(meta["compatibility"]["talos"]["version"].as<std::string>(),
                               std::regex(R"((>=|>|<=|<|=)\s*v?\d+\.\d+\.\d+.*)")));

  // The service spec (services.go): known keys, valid name, restart, depends, mounts.
  const std::string spec_path = root + "/rootfs/usr/local/etc/containers/" + kName + ".yaml";
  ASSERT_TRUE(fs::exists(spec_path));
  YAML::Node spec = YAML::LoadFile(spec_path);
  ExpectOnlyKeys(spec, {"name", "container", "depends", "restart", "logToConsole"}, "spec");
  EXPECT_EQ(spec["name"].as<std::string>(), kName);
  EXPECT_TRUE(std::regex_match(kName, std::regex("[-_a-z0-9]+")));
  EXPECT_EQ(spec["restart"].as<std::string>(), "always");
  for (const auto& dep : spec["depends"]) {
    ExpectOnlyKeys(dep, {"service", "path", "network", "time", "configuration"}, "depends item");
    EXPECT_EQ(dep.size(), 1u) << "a depends item must set exactly one key";
    for (const auto& n : dep["network"]) {
      EXPECT_TRUE((std::set<std::string>{"addresses", "connectivity", "hostname", "etcfiles"})
                      .count(n.as<std::string>()));
    }
  }
  const YAML::Node container = spec["container"];
  ExpectOnlyKeys(container,
                 {"entrypoint", "environment", "environmentFile", "args", "mounts", "security"},
                 "container");
  ExpectOnlyKeys(
      container["security"],
      {"writeableSysfs", "maskedPaths", "readonlyPaths", "writeableRootfs", "rootfsPropagation"},
      "security");
  EXPECT_FALSE(container["security"]["writeableRootfs"].as<bool>());
  std::set<std::string> destinations;
  for (const auto& m : container["mounts"]) {
    ExpectOnlyKeys(m, {"source", "destination", "type", "options"}, "mount");
    EXPECT_EQ(m["source"].as<std::string>()[0], '/');
    destinations.insert(m["destination"].as<std::string>());
  }
  for (const char* needed :
       {"/sys/fs/bpf", "/sys/kernel/tracing", "/sys/fs/cgroup", "/sys/kernel/btf", "/host/proc",
        "/var/lib/nodewatch", "/var/lib/kubelet/pki"}) {
    EXPECT_TRUE(destinations.count(needed)) << "missing mount " << needed;
  }
  const std::string croot = root + "/rootfs/usr/local/lib/containers/" + kName;
  const std::string entry = croot + container["entrypoint"].as<std::string>();
  ASSERT_TRUE(fs::is_regular_file(entry)) << entry;
  EXPECT_EQ(access(entry.c_str(), X_OK), 0) << "entrypoint is not executable";
}

TEST(TalosExtension, ReproducibleLayoutThatObeysTalosRules) {
  const std::string dir = MakeTempDir("talos-ext");
  const std::string first = BuildExtension(dir + "/a");
  const std::string second = BuildExtension(dir + "/b");
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(first, second) << "same inputs must give the same image digest";
  EXPECT_EQ(ReadFileToString(dir + "/a/oci/index.json").value(),
            ReadFileToString(dir + "/b/oci/index.json").value());
  bool archive = false;
  for (const auto& e : fs::directory_iterator(dir + "/a")) {
    archive |= e.path().string().ends_with(".oci.tar");
  }
  EXPECT_TRUE(archive) << "no OCI archive next to the layout";
  Unpack(dir + "/a/oci", dir + "/unpacked");
  ValidateTree(dir + "/unpacked");
  fs::remove_all(dir);
}

TEST(TalosExtension, AgentRunsFromTheContainerRootfsAlone) {
  // chroot and a private mount namespace need root, which CI has; this test never skips.
  ASSERT_EQ(geteuid(), 0) << "this test needs root (chroot); CI runs as root";
  Cluster c("e2e-talos-ext");
  const std::string ext = c.dir() + "/ext";
  ASSERT_FALSE(BuildExtension(ext).empty());
  const std::string root = c.dir() + "/unpacked";
  Unpack(ext + "/oci", root);
  const std::string croot = root + "/rootfs/usr/local/lib/containers/" + kName;

  // --version with nothing but the container rootfs.
  Subprocess version("/usr/sbin/chroot", {croot, "/usr/local/bin/" + kName, "--version"},
                     c.dir() + "/version.log");
  version.Start();
  ASSERT_EQ(version.Stop(0), 0) << version.log();
  EXPECT_THAT(version.log(), ::testing::HasSubstr("nodewatch-agent " NODEWATCH_VERSION));

  // A short run against a real aggregator, with the files Talos would mount.
  c.StartAggregator();
  auto cert = c.NodeCert("talos-node");
  fs::create_directories(croot + "/usr/local/etc/nodewatch/tls");
  for (auto [from, to] : std::vector<std::pair<std::string, std::string>>{
           {c.pki().ca_file(), "ca.crt"}, {cert.cert, "tls.crt"}, {cert.key, "tls.key"}}) {
    fs::copy_file(from, croot + "/usr/local/etc/nodewatch/tls/" + to);
  }
  std::ofstream(croot + "/usr/local/etc/nodewatch/agent.yaml")
      << "node-name: talos-node\naggregator: [\"" << c.ingest_address() << "\"]\n"
      << "spool-dir: /var/lib/nodewatch/spool\nproc-root: /host/proc\ncloud: none\n"
      << "interval: 1s\ntls-ca: /usr/local/etc/nodewatch/tls/ca.crt\n"
      << "tls-cert: /usr/local/etc/nodewatch/tls/tls.crt\n"
      << "tls-key: /usr/local/etc/nodewatch/tls/tls.key\n";
  const std::string script = "mount --bind /proc '" + croot + "/host/proc' && exec chroot '" +
                             croot + "' /usr/local/bin/" + kName +
                             " --config /usr/local/etc/nodewatch/agent.yaml";
  Subprocess agent("/usr/bin/unshare",
                   {"--mount", "--propagation", "private", "/bin/sh", "-c", script},
                   c.dir() + "/chroot-agent.log");
  agent.Start();
  ASSERT_TRUE(Cluster::WaitFor(
      [&] {
        auto node = c.GetNode("talos-node");
        return node && node->connected() && node->records() >= 3;
      },
      20'000))
      << agent.log();
  // Memory figures come from /host/proc/meminfo: the bind-mounted host /proc is read.
  bool memory_seen = false;
  for (const auto& r : c.History("talos-node")) {
    memory_seen |= r.has_heartbeat() && r.heartbeat().memory_total_bytes() > 0;
  }
  EXPECT_TRUE(memory_seen);
  agent.Stop(SIGTERM);
}

TEST(AggregatorImage, SelfContainedAndNonRoot) {
  ASSERT_EQ(geteuid(), 0) << "this test needs root (chroot); CI runs as root";
  const std::string dir = MakeTempDir("agg-image");
  ASSERT_FALSE(BuildWith("build-image.sh", "nodewatch-aggregator", dir + "/a").empty());
  const std::string layout = dir + "/a/oci";
  json index = json::parse(ReadFileToString(layout + "/index.json").value());
  json manifest = json::parse(ReadBlob(layout, index["manifests"][0]["digest"]));
  json config = json::parse(ReadBlob(layout, manifest["config"]["digest"]));
  EXPECT_EQ(config["config"]["User"], "65532:65532");
  EXPECT_EQ(config["config"]["Entrypoint"][0], "/usr/local/bin/nodewatch-aggregator");
  Unpack(layout, dir + "/root");
  Subprocess version(
      "/usr/sbin/chroot",
      {"--userspec=65532:65532", dir + "/root", "/usr/local/bin/nodewatch-aggregator", "--version"},
      dir + "/version.log");
  version.Start();
  ASSERT_EQ(version.Stop(0), 0) << version.log();
  EXPECT_THAT(version.log(), ::testing::HasSubstr("nodewatch-aggregator " NODEWATCH_VERSION));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace nodewatch::testing
