import Foundation
import MergeModel
import Testing
import _TestSupport

/// Repositories that are not in the hub cache, against a local server that answers as the Hub
/// does (Tests/HubServer): headers read remotely for check and plan, downloads for run.
@Suite(.enabled(if: HubServer.available, "needs python3 for the local Hub server"))
struct HubDownloadTests {
  static let recipe = """
    merge_method: task_arithmetic
    base_model: tiny-org/llama-base
    models:
      - model: tiny-org/llama-ft0
        parameters: {weight: 0.5}
    dtype: float32

    """

  static func server(
    in dir: TemporaryDirectory, faults: [String: Any] = [:]
  ) throws -> HubServer {
    try HubServer(
      repos: [
        "tiny-org/llama-base": (Repository.tinyLlama + "/base", false, false),
        "tiny-org/llama-ft0": (Repository.tinyLlama + "/ft0", false, false),
        "tiny-org/private": (Repository.tinyLlama + "/ft1", true, false),
        "tiny-org/gated": (Repository.tinyLlama + "/ft1", false, true),
      ], faults: faults, in: dir)
  }

  static func merge(_ arguments: [String], _ environment: [String: String]) throws -> (
    status: Int32, stdout: String, stderr: String
  ) {
    try runProcess(Repository.mergeExecutable, arguments, environment: environment)
  }

  /// The same merge with local paths: the bytes a download must give.
  static func localOutput(in dir: TemporaryDirectory) throws -> Data? {
    let text = recipe.replacingOccurrences(
      of: "tiny-org/llama-base", with: Repository.tinyLlama + "/base"
    )
    .replacingOccurrences(of: "tiny-org/llama-ft0", with: Repository.tinyLlama + "/ft0")
    let local = try merge(
      ["run", dir.write("local.yml", text), dir.path + "/local", "--no-cache"], [:])
    #expect(local.status == 0, "\(local.stderr)")
    return comparableContents(atPath: dir.path + "/local/model.safetensors")
  }

  @Test(
    "check and plan read only configs and headers (a few KB, counted by the server); run downloads and writes the local merge's bytes; plan predicts the same bytes before and after"
  )
  func remoteHeadersThenDownload() throws {
    let dir = TemporaryDirectory()
    let server = try Self.server(in: dir)
    let cache = dir.path + "/cache"
    let env = server.environment(cache: cache)
    let recipe = dir.write("r.yml", Self.recipe)
    let check = try Self.merge(["check", recipe], env)
    #expect(check.status == 0, "\(check.stderr)")
    let remotePlan = try Self.merge(["plan", recipe, "--json", "--no-cache"], env)
    #expect(remotePlan.status == 0, "\(remotePlan.stderr)")
    let stats = try server.stats()
    // Two repositories: file lists, config.json and two byte ranges of model.safetensors each.
    #expect(stats.bodyBytes < 40_000, "\(stats.bodyBytes)")
    let weights = stats.requests.filter { $0.path.hasSuffix("model.safetensors") }
    #expect(weights.count == 8 && weights.allSatisfy { $0.range != nil }, "\(weights)")
    #expect(!FileManager.default.fileExists(atPath: cache), "check and plan write nothing")
    let run = try Self.merge(["run", recipe, dir.path + "/out", "--no-cache"], env)
    #expect(run.status == 0, "\(run.stderr)")
    #expect(run.stderr.contains("downloading tiny-org/llama-base/model.safetensors (629840 bytes)"))
    #expect(
      comparableContents(atPath: dir.path + "/out/model.safetensors")
        == (try Self.localOutput(in: dir)))
    // The cache is huggingface_hub's: refs/main, a snapshot linking into blobs/.
    let folder = cache + "/models--tiny-org--llama-base"
    let commit = try String(contentsOfFile: folder + "/refs/main", encoding: .utf8)
    let link = try FileManager.default.destinationOfSymbolicLink(
      atPath: folder + "/snapshots/\(commit)/model.safetensors")
    let source = try #require(
      FileManager.default.contents(atPath: Repository.tinyLlama + "/base/model.safetensors"))
    #expect(link == "../../blobs/" + SHA256.hex([UInt8](source)))
    // Offline now, and priced the same.
    var offline = env
    offline["HF_HUB_OFFLINE"] = "1"
    let localPlan = try Self.merge(["plan", recipe, "--json", "--no-cache"], offline)
    #expect(localPlan.status == 0, "\(localPlan.stderr)")
    let before = try JSONValue.parse(remotePlan.stdout)
    let after = try JSONValue.parse(localPlan.stdout)
    for key in ["bytes_read", "bytes_read_all_passes", "bytes_written", "tensors", "shards"] {
      #expect(before[key] == after[key], "\(key)")
    }
    // What it said it would download: both models' config, weights and tokenizer files.
    let names = [
      "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
      "tokenizer_config.json",
    ]
    var expected = 0
    for model in ["base", "ft0"] {
      for name in names {
        expected += try FileSystem.size(of: Repository.tinyLlama + "/\(model)/\(name)")
      }
    }
    #expect(before["bytes_to_download"]?.intValue == expected)
    #expect(after["bytes_to_download"]?.intValue == 0)
  }

  @Test(
    "a cached snapshot that lacks files (only config.json) is completed from the Hub; its own file is left as it is"
  )
  func partialSnapshot() throws {
    let dir = TemporaryDirectory()
    let server = try Self.server(in: dir)
    let cache = dir.path + "/cache"
    let info = try JSONValue.parse(
      [UInt8](try fetch(server.endpoint + "/api/models/tiny-org/llama-base/revision/main")))
    let commit = try #require(info["sha"]?.stringValue)
    let folder = cache + "/models--tiny-org--llama-base"
    let config = dir.write(
      "cache/models--tiny-org--llama-base/snapshots/\(commit)/config.json",
      try String(contentsOfFile: Repository.tinyLlama + "/base/config.json", encoding: .utf8))
    dir.write("cache/models--tiny-org--llama-base/refs/main", commit)
    let recipe = dir.write("r.yml", Self.recipe)
    let run = try Self.merge(
      ["run", recipe, dir.path + "/out", "--no-cache"], server.environment(cache: cache))
    #expect(run.status == 0, "\(run.stderr)")
    #expect(run.stderr.contains("downloading tiny-org/llama-base/model.safetensors"))
    #expect(FileSystem.linkTarget(config) == nil, "the plain config.json stays a plain file")
    #expect(
      FileManager.default.fileExists(atPath: folder + "/snapshots/\(commit)/model.safetensors"))
    #expect(
      comparableContents(atPath: dir.path + "/out/model.safetensors")
        == (try Self.localOutput(in: dir)))
  }

  @Test(
    "LFS files answered with a redirect (as the Hub sends them to its content store) keep their byte ranges"
  )
  func redirects() throws {
    let dir = TemporaryDirectory()
    let server = try Self.server(in: dir, faults: ["redirect_lfs": true])
    let cache = dir.path + "/cache"
    let env = server.environment(cache: cache)
    let recipe = dir.write("r.yml", Self.recipe)
    let check = try Self.merge(["check", recipe], env)
    #expect(check.status == 0, "\(check.stderr)")
    let followed = try server.stats().requests.filter { $0.path.hasPrefix("/lfs/") }
    #expect(followed.count == 4 && followed.allSatisfy { $0.range != nil }, "\(followed)")
    let run = try Self.merge(["run", recipe, dir.path + "/out", "--no-cache"], env)
    #expect(run.status == 0, "\(run.stderr)")
    #expect(
      comparableContents(atPath: dir.path + "/out/model.safetensors")
        == (try Self.localOutput(in: dir)))
  }

  @Test(
    "a union tokenizer over Hub models is checked from their tokenizer files, then built as from local folders"
  )
  func remoteTokenizers() throws {
    let dir = TemporaryDirectory()
    let chat = Repository.parity + "/models/tiny-chat"
    let server = try HubServer(
      repos: [
        "chat/base": (chat + "/base", false, false),
        "chat/tools": (chat + "/ft-tools", false, false),
      ], in: dir)
    let env = server.environment(cache: dir.path + "/cache")
    let text =
      "merge_method: linear\nbase_model: BASE\nmodels:\n  - model: BASE\n    parameters: {weight: 0.5}\n  - model: TOOLS\n    parameters: {weight: 0.5}\ntokenizer_source: union\ndtype: float32\n"
    let hub = dir.write(
      "hub.yml",
      text.replacingOccurrences(of: "BASE", with: "chat/base").replacingOccurrences(
        of: "TOOLS", with: "chat/tools"))
    let check = try Self.merge(["plan", hub, "--json", "--no-cache"], env)
    #expect(check.status == 0, "\(check.stderr)")
    #expect(!FileManager.default.fileExists(atPath: dir.path + "/cache"))
    let run = try Self.merge(["run", hub, dir.path + "/hub-out", "--no-cache"], env)
    #expect(run.status == 0, "\(run.stderr)")
    let local = dir.write(
      "local.yml",
      text.replacingOccurrences(of: "BASE", with: chat + "/base").replacingOccurrences(
        of: "TOOLS", with: chat + "/ft-tools"))
    let twin = try Self.merge(["run", local, dir.path + "/local-out", "--no-cache"], [:])
    #expect(twin.status == 0, "\(twin.stderr)")
    for file in ["model.safetensors", "tokenizer.json", "config.json"] {
      #expect(
        comparableContents(atPath: dir.path + "/hub-out/" + file)
          == comparableContents(atPath: dir.path + "/local-out/" + file), "\(file)")
    }
    // Priced from the Hub as from the downloaded copy.
    var offline = env
    offline["HF_HUB_OFFLINE"] = "1"
    let localPlan = try Self.merge(["plan", hub, "--json", "--no-cache"], offline)
    #expect(localPlan.status == 0, "\(localPlan.stderr)")
    let before = try JSONValue.parse(check.stdout)
    let after = try JSONValue.parse(localPlan.stdout)
    for key in ["bytes_read", "bytes_written", "tensors"] {
      #expect(before[key] == after[key], "\(key)")
    }
  }

  @Test(
    "Hub repositories of pytorch_model.bin (one file, sharded) are checked from their zip directories and pickles, then downloaded and merged"
  )
  func pickleRepositories() throws {
    let dir = TemporaryDirectory()
    let bins = Repository.parity + "/bin-models"
    let server = try HubServer(
      repos: [
        "old/base": (bins + "/base", false, false),
        "old/ft0": (bins + "/ft0-sharded", false, false),
      ], in: dir)
    let env = server.environment(cache: dir.path + "/cache")
    let text =
      "merge_method: task_arithmetic\nbase_model: BASE\nmodels:\n  - model: FT0\n    parameters: {weight: 0.5}\ndtype: float32\n"
    let hub = dir.write(
      "hub.yml",
      text.replacingOccurrences(of: "BASE", with: "old/base").replacingOccurrences(
        of: "FT0", with: "old/ft0"))
    let plan = try Self.merge(["plan", hub, "--json", "--no-cache"], env)
    #expect(plan.status == 0, "\(plan.stderr)")
    let fetched = try server.stats().bodyBytes
    // The directories and pickles of three archives, not their 1.28 MB of tensors.
    #expect(fetched < 300_000, "\(fetched)")
    #expect(!FileManager.default.fileExists(atPath: dir.path + "/cache"))
    let run = try Self.merge(["run", hub, dir.path + "/hub-out", "--no-cache"], env)
    #expect(run.status == 0, "\(run.stderr)")
    let local = dir.write(
      "local.yml",
      text.replacingOccurrences(of: "BASE", with: Repository.tinyLlama + "/base")
        .replacingOccurrences(
          of: "FT0", with: Repository.tinyLlama + "/ft0"))
    let twin = try Self.merge(["run", local, dir.path + "/local-out", "--no-cache"], [:])
    #expect(twin.status == 0, "\(twin.stderr)")
    #expect(
      comparableContents(atPath: dir.path + "/hub-out/model.safetensors")
        == comparableContents(atPath: dir.path + "/local-out/model.safetensors"))
    var offline = env
    offline["HF_HUB_OFFLINE"] = "1"
    let after = try Self.merge(["plan", hub, "--json", "--no-cache"], offline)
    for key in ["bytes_read", "bytes_written", "tensors"] {
      #expect(
        (try JSONValue.parse(plan.stdout))[key] == (try JSONValue.parse(after.stdout))[key],
        "\(key)")
    }
  }

  @Test("a download killed midway is resumed from its .incomplete file with a range request")
  func resumeAfterKill() throws {
    let dir = TemporaryDirectory()
    let server = try Self.server(
      in: dir, faults: ["stall_once": ["tiny-org/llama-base/model.safetensors": 100_000]])
    let cache = dir.path + "/cache"
    let env = server.environment(cache: cache)
    let recipe = dir.write("r.yml", Self.recipe)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: Repository.mergeExecutable)
    process.arguments = ["run", recipe, dir.path + "/out", "--no-cache", "--quiet"]
    process.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
    process.standardError = FileHandle.nullDevice
    try process.run()
    let source = try #require(
      FileManager.default.contents(atPath: Repository.tinyLlama + "/base/model.safetensors"))
    let partial =
      cache + "/models--tiny-org--llama-base/blobs/" + SHA256.hex([UInt8](source)) + ".incomplete"
    var waited = 0
    while (try? FileSystem.size(of: partial)) != 100_000 && waited < 300 {
      usleep(100_000)
      waited += 1
    }
    #expect((try? FileSystem.size(of: partial)) == 100_000)
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    #expect(!FileManager.default.fileExists(atPath: dir.path + "/out"))
    let run = try Self.merge(["run", recipe, dir.path + "/out", "--no-cache"], env)
    #expect(run.status == 0, "\(run.stderr)")
    #expect(
      run.stderr.contains(
        "resuming tiny-org/llama-base/model.safetensors at 100000 of 629840 bytes"))
    let ranges = try server.stats().requests.filter {
      $0.path.contains("llama-base/resolve/") && $0.path.hasSuffix("model.safetensors")
    }.compactMap(\.range)
    #expect(ranges.contains("bytes=100000-"), "\(ranges)")
    #expect(!FileManager.default.fileExists(atPath: partial))
    #expect(
      comparableContents(atPath: dir.path + "/out/model.safetensors")
        == (try Self.localOutput(in: dir)))
  }

  @Test("a blob whose SHA-256 is not the Hub's is discarded and fetched again")
  func corruptedBlob() throws {
    let dir = TemporaryDirectory()
    let server = try Self.server(
      in: dir, faults: ["corrupt_once": ["tiny-org/llama-ft0/model.safetensors"]])
    let cache = dir.path + "/cache"
    let recipe = dir.write("r.yml", Self.recipe)
    let run = try Self.merge(
      ["run", recipe, dir.path + "/out", "--no-cache"], server.environment(cache: cache))
    #expect(run.status == 0, "\(run.stderr)")
    let source = try #require(
      FileManager.default.contents(atPath: Repository.tinyLlama + "/ft0/model.safetensors"))
    let sha = SHA256.hex([UInt8](source))
    #expect(run.stderr.contains("tiny-org/llama-ft0/model.safetensors: SHA-256 "), "\(run.stderr)")
    #expect(run.stderr.contains("is not the Hub's \(sha); fetching it again"))
    #expect(
      FileManager.default.contents(atPath: cache + "/models--tiny-org--llama-ft0/blobs/" + sha)
        == source)
    #expect(
      comparableContents(atPath: dir.path + "/out/model.safetensors")
        == (try Self.localOutput(in: dir)))
  }

  @Test("401, a gated repository, a missing revision (404) and the offline switch are said plainly")
  func accessErrors() throws {
    let dir = TemporaryDirectory()
    let server = try Self.server(in: dir)
    let cache = dir.path + "/cache"
    let recipe = dir.write(
      "r.yml",
      """
      merge_method: linear
      models:
        - model: tiny-org/private
          parameters: {weight: 1}
        - model: tiny-org/gated
          parameters: {weight: 1}
        - model: tiny-org/llama-ft0@v9
          parameters: {weight: 1}

      """)
    let check = try Self.merge(["check", recipe], server.environment(cache: cache))
    #expect(check.status == 1)
    #expect(
      check.stderr.contains(
        "r.yml:3:12: error: 'tiny-org/private' on the Hub: the Hub refused access (HTTP 401): the repository is private or does not exist; set HF_TOKEN (or log in with 'hf auth login') if you have access"
      ), "\(check.stderr)")
    #expect(
      check.stderr.contains(
        "r.yml:5:12: error: 'tiny-org/gated' on the Hub: the repository is gated: accept its conditions at \(server.endpoint)/tiny-org/gated, then use a token of that account (none is set)"
      ), "\(check.stderr)")
    #expect(
      check.stderr.contains(
        "r.yml:7:12: error: 'tiny-org/llama-ft0' on the Hub: the repository has no such revision (HTTP 404 for "
      ), "\(check.stderr)")
    // With the token, the private and gated repositories open; the revision is still missing.
    let authorized = try Self.merge(
      ["check", recipe], server.environment(cache: cache, token: HubServer.token))
    #expect(authorized.status == 1)
    #expect(!authorized.stderr.contains("tiny-org/private"), "\(authorized.stderr)")
    #expect(!authorized.stderr.contains("tiny-org/gated"), "\(authorized.stderr)")
    #expect(authorized.stderr.contains("no such revision"))
    // Offline: nothing is asked of the server, and the error says what is missing.
    let asked = try server.stats().requests.count
    var offline = server.environment(cache: cache)
    offline["HF_HUB_OFFLINE"] = "1"
    let run = try Self.merge(["run", dir.write("ok.yml", Self.recipe), dir.path + "/out"], offline)
    #expect(run.status == 1)
    #expect(
      run.stderr.contains(
        "'tiny-org/llama-base' is not a local folder, and it is not in the Hugging Face cache"))
    #expect(run.stderr.contains("with the network off (HF_HUB_OFFLINE) merge cannot fetch it"))
    #expect(try server.stats().requests.count == asked + 1, "only the stats request itself")
    #expect(!FileManager.default.fileExists(atPath: dir.path + "/out"))
  }
}
