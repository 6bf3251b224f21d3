import Foundation
import MergeModel
import Testing
import _TestSupport

/// Models named by Hugging Face repository id, read from the hub cache (Tests/Parity/hf-cache:
/// copies of tiny-llama base and ft0 in huggingface_hub's layout).
@Suite struct HubTests {
  static let cache = Repository.parity + "/hf-cache"
  static let offline = ["HF_HOME": cache, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": ""]

  /// Runs `merge` with `environment` added to this process's.
  static func merge(_ arguments: [String], environment: [String: String]) throws -> (
    status: Int32, stdout: String, stderr: String
  ) {
    try runProcess(Repository.mergeExecutable, arguments, environment: environment)
  }

  /// The recipe `name` of Tests/Parity/hub-recipes with its repositories replaced by the
  /// tiny-llama folders they copy: its local twin.
  static func localTwin(_ name: String, in dir: TemporaryDirectory) throws -> String {
    var text = try String(
      contentsOfFile: Repository.parity + "/hub-recipes/\(name).yml", encoding: .utf8)
    for (repository, model) in [("llama-base", "base"), ("llama-ft0", "ft0")] {
      for revision in ["@main", "@17066320ab39747c9536a8c574912cc6b7f4ddd3", ""] {
        text = text.replacingOccurrences(
          of: "tiny-org/\(repository)\(revision)", with: Repository.tinyLlama + "/" + model)
      }
    }
    text = text.replacingOccurrences(of: "../models/tiny-llama", with: Repository.tinyLlama)
    return dir.write("\(name)-local.yml", text)
  }

  @Test(
    "hub recipes run offline from the cache and write the bytes of their local twins",
    arguments: ["hub_task_arithmetic", "hub_revision"])
  func hubRecipes(_ name: String) throws {
    let dir = TemporaryDirectory()
    let recipe = Repository.parity + "/hub-recipes/\(name).yml"
    let hub = try Self.merge(
      ["run", recipe, dir.path + "/hub", "--no-cache"], environment: Self.offline)
    #expect(hub.status == 0, "\(hub.stderr)")
    let local = try Self.merge(
      ["run", try Self.localTwin(name, in: dir), dir.path + "/local", "--no-cache"],
      environment: [:])
    #expect(local.status == 0, "\(local.stderr)")
    for file in ["model.safetensors", "config.json", "tokenizer.json"] {
      #expect(
        comparableContents(atPath: dir.path + "/hub/" + file)
          == comparableContents(atPath: dir.path + "/local/" + file), "\(file)")
    }
    // mergekit's output for the same merge, within the parity tolerance (float32).
    try Self.expectParity(dir.path + "/hub", Repository.parity + "/expected/\(name)")
  }

  /// Every tensor of `folder` within `1e-6 + 1e-5·max` of the one in `expected`.
  static func expectParity(_ folder: String, _ expected: String) throws {
    let ours = try ModelFolder(path: folder).openWeights()
    let theirs = try ModelFolder(path: expected).openWeights()
    #expect(ours.tensors.map(\.name).sorted() == theirs.tensors.map(\.name).sorted())
    for t in theirs.tensors {
      let e = try theirs.tensor(t.name).floats()
      let o = try ours.tensor(t.name).floats()
      let largest = e.reduce(Float(0)) { max($0, abs($1)) }
      let worst = zip(o, e).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
      #expect(o.count == e.count && worst <= 1e-6 + 1e-5 * largest, "\(t.name): \(worst)")
    }
  }

  @Test("the model card lists the repositories as base_model and local folders by name only")
  func modelCard() throws {
    let dir = TemporaryDirectory()
    let run = try Self.merge(
      [
        "run", Repository.parity + "/hub-recipes/hub_revision.yml", dir.path + "/out", "--no-cache",
      ],
      environment: Self.offline)
    #expect(run.status == 0, "\(run.stderr)")
    let card = try String(contentsOfFile: dir.path + "/out/README.md", encoding: .utf8)
    #expect(
      card.hasPrefix(
        "---\nbase_model:\n- tiny-org/llama-base\n- tiny-org/llama-ft0\nlibrary_name: transformers\n"
      ))
    #expect(
      card.contains(
        "- Base model: [tiny-org/llama-base@main](https://huggingface.co/tiny-org/llama-base)\n"))
    #expect(card.contains("  - `ft1`\n"))
    #expect(!card.contains(Repository.root))
  }

  @Test("a cache whose snapshots are real symbolic links, as huggingface_hub writes it")
  func symbolicLinks() throws {
    let dir = TemporaryDirectory()
    let hub = dir.path + "/hf/hub"
    for repository in ["models--tiny-org--llama-base", "models--tiny-org--llama-ft0"] {
      let source = Self.cache + "/hub/" + repository
      let target = hub + "/" + repository
      try FileManager.default.createDirectory(
        atPath: target, withIntermediateDirectories: true)
      for folder in ["blobs", "refs"] {
        try FileManager.default.copyItem(
          atPath: source + "/" + folder, toPath: target + "/" + folder)
      }
      for commit in try FileManager.default.contentsOfDirectory(atPath: source + "/snapshots") {
        let snapshot = target + "/snapshots/" + commit
        try FileManager.default.createDirectory(
          atPath: snapshot, withIntermediateDirectories: true)
        for file in try FileManager.default.contentsOfDirectory(
          atPath: source + "/snapshots/" + commit)
        {
          // The copy in Tests/Parity holds each link's target as text.
          let link = try String(
            contentsOfFile: source + "/snapshots/\(commit)/\(file)", encoding: .utf8)
          try FileManager.default.createSymbolicLink(
            atPath: snapshot + "/" + file, withDestinationPath: link)
        }
      }
    }
    let run = try Self.merge(
      [
        "run", Repository.parity + "/hub-recipes/hub_task_arithmetic.yml", dir.path + "/out",
        "--no-cache",
      ],
      environment: ["HF_HUB_CACHE": hub, "HF_HOME": "/nonexistent", "HF_HUB_OFFLINE": "1"])
    #expect(run.status == 0, "\(run.stderr)")
    try Self.expectParity(dir.path + "/out", Repository.parity + "/expected/hub_task_arithmetic")
  }

  @Test("a repository or a revision that is not cached is an error that says where it looked")
  func misses() throws {
    let dir = TemporaryDirectory()
    let recipe = dir.write(
      "r.yml",
      """
      merge_method: linear
      models:
        - model: tiny-org/llama-ft9
          parameters: {weight: 1}
        - model: tiny-org/llama-ft0@v2
          parameters: {weight: 1}
      """)
    let check = try Self.merge(["check", recipe], environment: Self.offline)
    #expect(check.status == 1)
    #expect(
      check.stderr.contains(
        "r.yml:3:12: error: 'tiny-org/llama-ft9' is not a local folder, and it is not in the Hugging Face cache (no \(Self.cache)/hub/models--tiny-org--llama-ft9)"
      ), "\(check.stderr)")
    #expect(
      check.stderr.contains(
        "note: with the network off (HF_HUB_OFFLINE) merge cannot fetch it: unset HF_HUB_OFFLINE, fetch it into that cache with 'hf download tiny-org/llama-ft9'"
      ))
    #expect(
      check.stderr.contains(
        "r.yml:5:12: error: 'tiny-org/llama-ft0' is not a local folder, and revision 'v2' is not in the Hugging Face cache at \(Self.cache)/hub/models--tiny-org--llama-ft0 (cached: main, 17066320ab39)"
      ), "\(check.stderr)")
    #expect(check.stderr.contains("'hf download tiny-org/llama-ft0 --revision v2'"))
  }

  @Test(
    "a relative path found only from the working directory is used, as mergekit uses it, with a warning"
  )
  func workingDirectory() throws {
    let workspace = ModelWorkspace()
    let recipe = workspace.recipe(
      "merge_method: linear\nmodels:\n  - model: models/ft0\n    parameters: {weight: 1}\n",
      name: "sub/r.yml")
    let here = try runProcess(
      Repository.mergeExecutable, ["check", recipe], currentDirectory: workspace.directory.path)
    #expect(here.status == 0, "\(here.stderr)")
    #expect(
      here.stderr.contains(
        "r.yml:3:12: warning: 'models/ft0' is read from the working directory, as mergekit reads it"
      ), "\(here.stderr)")
    #expect(
      here.stderr.contains("not beside the recipe ('\(workspace.directory.path)/sub/models/ft0')"))
    // From elsewhere, neither exists: both places are named.
    let elsewhere = try runProcess(
      Repository.mergeExecutable, ["check", recipe], currentDirectory: "/")
    #expect(elsewhere.status == 1)
    #expect(
      elsewhere.stderr.contains(
        "note: no folder '\(workspace.directory.path)/sub/models/ft0' or 'models/ft0' from the working directory (as mergekit would) either"
      ), "\(elsewhere.stderr)")
  }
}
