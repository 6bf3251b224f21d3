import Foundation
import MergeModel
import Testing
import _TestSupport

@testable import MergeCLI

@Suite struct PlanTests {
  static func json(_ text: String) throws -> [String: Any] {
    let value = try JSONSerialization.jsonObject(with: Data(text.utf8))
    return try #require(value as? [String: Any])
  }

  @Test("merge plan --json has the figures CI reads, and they agree with a run")
  func json() throws {
    let recipe = Repository.parity + "/recipes/ties_bf16.yml"
    let result = merge("plan", recipe, "--json", "--threads", "2", "--no-cache")
    #expect(result.status == 0, "\(result.err)")
    let plan = try Self.json(result.out)
    #expect(plan["method"] as? String == "ties")
    #expect(plan["tensors"] as? Int == 39)
    #expect(plan["shards"] as? Int == 1)
    #expect(plan["threads"] as? Int == 2)
    #expect(plan["calibrated"] as? Bool == false)
    #expect(plan["schedule"] as? String == "default")
    #expect((plan["peak_memory_bytes"] as? Int ?? 0) > (plan["baseline_memory_bytes"] as? Int ?? 0))
    #expect((plan["estimated_seconds"] as? Double ?? 0) > 0)
    // Three models of 625,792 bytes each, read.
    #expect(plan["bytes_read"] as? Int == 3 * 625_792)
    let largest = try #require(plan["largest_tensors"] as? [[String: Any]])
    #expect(largest.count == 5)
    #expect(largest.first?["name"] as? String == "lm_head.weight")
    let sources = try #require(plan["sources"] as? [[String: Any]])
    #expect(sources.map { $0["bytes"] as? Int } == [625_792, 625_792, 625_792])

    let dir = TemporaryDirectory()
    let run = merge("run", recipe, dir.path + "/out", "--no-cache")
    #expect(run.status == 0)
    let written = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/out").reduce(0) {
      $0 + (try FileSystem.size(of: dir.path + "/out/" + $1))
    }
    #expect(plan["bytes_written"] as? Int == written)
  }

  @Test("merge plan prints a summary, or a markdown report for a pull request")
  func formats() throws {
    let recipe = Repository.parity + "/recipes/slerp.yml"
    let text = merge("plan", recipe, "--no-cache")
    #expect(text.status == 0)
    #expect(text.out.hasPrefix("\(recipe): slerp, 2 models, 39 tensors → 1 shard\n"))
    #expect(text.out.contains("\nmemory:   peak "))
    #expect(text.out.contains("(default constants; run 'merge plan --calibrate'"))
    #expect(text.out.contains("\nlargest working sets:\n  lm_head.weight  "))
    let markdown = merge("plan", recipe, "--format", "markdown", "--no-cache")
    #expect(markdown.status == 0)
    #expect(markdown.out.hasPrefix("### `merge plan` — `\(recipe)`\n"))
    #expect(markdown.out.contains("| Peak memory | "))
    #expect(markdown.out.contains("| Source | Size | Files | In page cache |"))
    #expect(markdown.out.contains("| `../models/tiny-llama/ft0` | 625.79 KB | 1 |"))
    let conflict = merge("plan", recipe, "--json", "--format", "markdown")
    #expect(conflict.status == 64)
    #expect(conflict.err.contains("'--json' and '--format markdown' disagree"))
    let unknown = merge("plan", recipe, "--format", "yaml")
    #expect(unknown.status == 64)
  }

  @Test("a budget no schedule meets: plan and run exit 1 with the figure, and nothing is written")
  func budgetTooSmall() throws {
    let recipe = Repository.parity + "/recipes/ties.yml"
    let plan = merge("plan", recipe, "--max-memory", "1M", "--no-cache")
    #expect(plan.status == 1)
    #expect(plan.err.contains("even with the smallest schedule; --max-memory is 1.00 MB"))
    #expect(plan.out.contains("budget:   1.00 MB: does not fit"))
    let dir = TemporaryDirectory()
    let run = merge("run", recipe, dir.path + "/out", "--max-memory", "1M", "--no-cache")
    #expect(run.status == 1)
    #expect(run.err.contains("even with the smallest schedule; --max-memory is 1.00 MB"))
    #expect(!FileManager.default.fileExists(atPath: dir.path + "/out"))
    let roomy = merge("plan", recipe, "--max-memory", "64GiB", "--json", "--no-cache")
    #expect(roomy.status == 0)
    #expect(try Self.json(roomy.out)["fits"] as? Bool == true)
    #expect(try Self.json(roomy.out)["max_memory_bytes"] as? Int == 64 << 30)
    #expect(merge("plan", recipe, "--max-memory", "lots").status == 64)
  }

  @Test("merge plan prices 2 × 268 MB models whose data was never written without reading it")
  func noData() throws {
    let dir = TemporaryDirectory()
    let rows = 65536
    let big = rows * 2048 * 2
    let header =
      #"{"model.layers.0.input_layernorm.weight":{"dtype":"BF16","shape":[2048],"data_offsets":[0,4096]},"#
      + #""model.embed_tokens.weight":{"dtype":"BF16","shape":[\#(rows),2048],"data_offsets":[4096,\#(4096 + big)]}}"#
    let padded = header + String(repeating: " ", count: (8 - header.utf8.count % 8) % 8)
    var files: [String] = []
    for name in ["base", "ft"] {
      let path = dir.write(
        "\(name)/model.safetensors", bytes: safetensorsBytes(header: padded, data: []))
      // The data section is a hole: the file has its full size, and no byte of it was written.
      #expect(truncate(path, off_t(8 + padded.utf8.count + 4096 + big)) == 0)
      dir.write(
        "\(name)/config.json",
        #"{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_hidden_layers": 1, "tie_word_embeddings": false}"#
      )
      files.append(path)
    }
    let recipe = dir.write(
      "r.yml",
      "merge_method: task_arithmetic\nbase_model: base\nmodels:\n  - {model: ft, parameters: {weight: 0.5}}\ndtype: bfloat16\n"
    )
    let result = merge("plan", recipe, "--json", "--no-cache")
    #expect(result.status == 0, "\(result.err)")
    let plan = try Self.json(result.out)
    #expect(plan["bytes_read"] as? Int == 2 * (4096 + big))
    #expect(plan["bytes_written"] as? Int ?? 0 > big)
    #expect(plan["bytes_read_from_disk"] as? Int ?? 0 > 2 * big - (8 << 20))
    // No page of the data section entered the page cache (read-ahead of the header aside).
    for path in files {
      let start = 8 + padded.utf8.count
      let cached = MappedFile.cachedBytes(path: path, range: start..<(start + 4096 + big))
      #expect(cached < 4 << 20, "\(path): \(cached) bytes of data in the page cache")
    }
  }
}

/// Runs git with a fixed identity and branch in `dir`, expecting success.
func runGit(_ args: [String], in dir: TemporaryDirectory) throws {
  let r = try runProcess(
    "/usr/bin/env",
    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"] + args,
    currentDirectory: dir.path)
  #expect(r.status == 0, "git \(args): \(r.stderr)")
}

@Suite struct CIExampleTests {
  @Test(
    "Examples/ci/plan-changed-recipes reports the recipes a change touches, and fails on a bad one")
  func changedRecipes() throws {
    let dir = TemporaryDirectory()
    func git(_ args: String...) throws { try runGit(args, in: dir) }
    let models = Repository.tinyLlama
    dir.write(
      "recipes/old.yml",
      "merge_method: linear\nmodels:\n  - {model: \(models)/ft0, parameters: {weight: 1}}\n")
    try git("init", "-q")
    try git("add", ".")
    try git("commit", "-qm", "base")
    dir.write(
      "recipes/new.yml",
      "merge_method: ties\nbase_model: \(models)/base\nmodels:\n  - {model: \(models)/ft0, parameters: {weight: 1, density: 0.5}}\n"
    )
    dir.write("recipes/broken.yml", "merge_method: ties\nmodels:\n  - model: nowhere\n")
    dir.write("notes.yml", "not: a recipe\n")
    try git("add", ".")
    try git("commit", "-qm", "change")
    let script = Repository.examples + "/ci/plan-changed-recipes"
    let result = try runProcess(
      "/usr/bin/env", ["MERGE=\(Repository.mergeExecutable)", script, "HEAD~1"],
      currentDirectory: dir.path)
    #expect(result.status == 1)
    #expect(result.stdout.contains("### `merge plan` — `recipes/new.yml`"))
    #expect(result.stdout.contains("| Peak memory | "))
    #expect(result.stdout.contains("### `recipes/broken.yml`: check failed"))
    #expect(!result.stdout.contains("old.yml"))
    #expect(!result.stdout.contains("notes.yml"))
  }
}

/// The steps of Examples/ci/merge.yml, run as the workflow runs them.
@Suite(.enabled(if: HubServer.available, "needs python3 for the local GitHub and Hub servers"))
struct CIWorkflowTests {
  static let scripts = Repository.examples + "/ci/"

  /// A git repository with one committed recipe, then a change adding `recipes/new.yml`.
  func repository(_ dir: TemporaryDirectory, newRecipe: String) throws {
    func git(_ args: String...) throws { try runGit(args, in: dir) }
    dir.link("models", to: Repository.tinyLlama)
    dir.write(
      "recipes/old.yml",
      "merge_method: linear\nmodels:\n  - {model: models/ft0, parameters: {weight: 1}}\n")
    try git("init", "-q")
    try git("add", ".")
    try git("commit", "-qm", "base")
    dir.write("recipes/new.yml", newRecipe)
    try git("add", ".")
    try git("commit", "-qm", "change")
  }

  @Test("the workflow's steps are these scripts, and nothing is a placeholder to fill in")
  func workflow() throws {
    let text = try String(contentsOfFile: Self.scripts + "merge.yml", encoding: .utf8)
    for script in ["plan-changed-recipes", "post-report", "merge-changed-recipes"] {
      #expect(text.contains("ci/\(script)"), "\(script)")
      #expect(FileManager.default.isExecutableFile(atPath: Self.scripts + script))
    }
    #expect(!text.contains("MERGE_SOURCE"))
    #expect(!text.contains("swift build"))
    #expect(text.contains("matrix: {threads: [1, 2]}"))
    #expect(text.contains("diff -r locks-1 locks-2"))
    #expect(text.contains("if: always()"))
  }

  @Test(
    "post-report keeps one comment, updated on each push; a fork's token and a missing report go to the job summary"
  )
  func postReport() throws {
    let dir = TemporaryDirectory()
    let github = try GitHubServer(in: dir)
    let summary = dir.path + "/summary.md"
    func post(_ report: String, token: String = GitHubServer.token, readOnly: Bool = false) throws
      -> (status: Int32, stdout: String, stderr: String)
    {
      try runProcess(
        Self.scripts + "post-report", [report], currentDirectory: dir.path,
        environment: [
          "GITHUB_TOKEN": token, "GITHUB_REPOSITORY": "team/recipes", "PR_NUMBER": "7",
          "GITHUB_API_URL": github.endpoint, "GITHUB_STEP_SUMMARY": summary,
          "MERGE_CI_READ_ONLY": readOnly ? "1" : "",
        ])
    }
    let first = dir.write("plan.md", "## first report\n")
    #expect(try post(first).status == 0)
    let second = dir.write("plan2.md", "## second report\n")
    #expect(try post(second).status == 0)
    var state = try github.state()
    #expect(state.comments.count == 1)
    #expect(state.comments.first?.body.contains("## second report") == true)
    #expect(state.requests.filter { $0.hasPrefix("PATCH") }.count == 1)
    // A fork's pull request: nothing is posted, the report is in the summary.
    let requests = state.requests.count
    let fork = try post(first, readOnly: true)
    #expect(fork.status == 0)
    #expect(try github.state().requests.count == requests)
    #expect(try String(contentsOfFile: summary, encoding: .utf8).contains("## first report"))
    // A token that cannot write (GitHub answers 403): the summary again, the job not failed.
    let refused = try post(second, token: "read-only")
    #expect(refused.status == 0)
    #expect(refused.stderr.contains("GitHub answered 403"), "\(refused.stderr)")
    // No report at all (the step before failed): said so, in the comment.
    #expect(try post(dir.path + "/missing.md").status == 0)
    state = try github.state()
    #expect(state.comments.count == 1)
    #expect(state.comments.first?.body.contains("no report") == true)
  }

  @Test("merge-changed-recipes on one thread and on two: the same lock files, outputs included")
  func sameLocks() throws {
    let dir = TemporaryDirectory()
    try repository(
      dir,
      newRecipe:
        "merge_method: ties\nbase_model: models/base\nmodels:\n  - {model: models/ft0, parameters: {weight: 1, density: 0.5}}\n  - {model: models/ft1, parameters: {weight: 0.5, density: 0.7}}\n"
    )
    // The change's lock, made on its author's machine.
    let lock = try runProcess(
      Repository.mergeExecutable, ["lock", "recipes/new.yml"], currentDirectory: dir.path)
    #expect(lock.status == 0, "\(lock.stderr)")
    var locks: [String] = []
    for threads in ["1", "2"] {
      let run = try runProcess(
        Self.scripts + "merge-changed-recipes", ["HEAD~1", "out-\(threads)"],
        currentDirectory: dir.path,
        environment: ["MERGE": Repository.mergeExecutable, "MERGE_THREADS": threads])
      #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
      locks.append(
        try String(contentsOfFile: dir.path + "/out-\(threads)/recipes_new.lock", encoding: .utf8))
    }
    #expect(locks[0] == locks[1])
    #expect(locks[0].contains("\"file\": \"model.safetensors\""))
    // An input that changed after the lock: the job fails, naming it.
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir.path + "/recipes/new.lock")))
    let text = String(decoding: bytes, as: UTF8.self).replacingOccurrences(
      of: "\"seed\": 0", with: "\"seed\": 1")
    bytes = Array(text.utf8)
    try Data(bytes).write(to: URL(fileURLWithPath: dir.path + "/recipes/new.lock"))
    let stale = try runProcess(
      Self.scripts + "merge-changed-recipes", ["HEAD~1", "out-3"], currentDirectory: dir.path,
      environment: ["MERGE": Repository.mergeExecutable])
    #expect(stale.status == 1)
    #expect(stale.stderr.contains("--locked: the inputs are not the ones"), "\(stale.stderr)")
  }

  @Test("a recipe that names a Hub id is checked and priced from the Hub's headers")
  func hubRecipe() throws {
    let dir = TemporaryDirectory()
    let hub = try HubServer(
      repos: [
        "tiny-org/llama-base": (Repository.tinyLlama + "/base", false, false),
        "tiny-org/llama-ft0": (Repository.tinyLlama + "/ft0", false, false),
      ], in: dir)
    try repository(
      dir,
      newRecipe:
        "merge_method: task_arithmetic\nbase_model: tiny-org/llama-base\nmodels:\n  - {model: tiny-org/llama-ft0, parameters: {weight: 0.5}}\n"
    )
    var environment = hub.environment(cache: dir.path + "/hf-cache")
    environment["MERGE"] = Repository.mergeExecutable
    let result = try runProcess(
      Self.scripts + "plan-changed-recipes", ["HEAD~1"], currentDirectory: dir.path,
      environment: environment)
    #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
    #expect(result.stdout.contains("### `merge plan` — `recipes/new.yml`"), "\(result.stdout)")
    #expect(result.stdout.contains("tiny-org/llama-base"))
    #expect(
      !FileManager.default.fileExists(
        atPath: dir.path + "/hf-cache/models--tiny-org--llama-ft0/blobs"))
  }
}
