import Dispatch
import Foundation
import MergeModel
import MergeRecipe
import Synchronization
import Testing
import _TestSupport

/// `merge run --partition I/N` and `merge assemble`: one merge split across processes.
@Suite struct PartitionTests {
  struct Case: Sendable, CustomTestStringConvertible {
    var recipe: String
    var shardSize: String
    var testDescription: String { recipe }
  }

  static let cases = [
    Case(recipe: "ties", shardSize: "200K"),  // a sharded TIES
    Case(recipe: "passthrough_slices", shardSize: "150K"),  // a frankenmerge
    Case(recipe: "multi_two_stage", shardSize: "200K"),  // stage tensors computed where read
  ]

  /// Every file of a folder with its bytes.
  static func files(_ folder: String) throws -> [String: Data] {
    var out: [String: Data] = [:]
    for name in try FileManager.default.contentsOfDirectory(atPath: folder) {
      out[name] = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name))
    }
    return out
  }

  static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> (
    status: Int32, stdout: String, stderr: String
  ) {
    try runProcess(Repository.mergeExecutable, arguments, environment: environment)
  }

  @Test(
    "four partitions, one after another or two at once, assemble into the single run's files",
    arguments: cases)
  func assembleIsSingleRun(c: Case) throws {
    let dir = TemporaryDirectory()
    let recipe = Repository.parity + "/recipes/\(c.recipe).yml"
    let common = ["--shard-size", c.shardSize, "--no-cache", "--quiet"]
    let single = try Self.run(["run", recipe, dir.path + "/single"] + common)
    #expect(single.status == 0, "\(single.stderr)")
    let expected = try Self.files(dir.path + "/single")
    #expect(expected.keys.filter { $0.hasSuffix(".safetensors") }.count >= 4)
    // One after another.
    for i in 0..<4 {
      let part = try Self.run(
        ["run", recipe, dir.path + "/seq"] + common + ["--partition", "\(i)/4"])
      #expect(part.status == 0, "\(part.stderr)")
    }
    // Two at once, twice.
    let failures = Mutex<[String]>([])
    for pair in [[0, 1], [2, 3]] {
      DispatchQueue.concurrentPerform(iterations: 2) { k in
        do {
          let part = try Self.run(
            ["run", recipe, dir.path + "/par"] + common + ["--partition", "\(pair[k])/4"])
          if part.status != 0 { failures.withLock { $0.append(part.stderr) } }
        } catch {
          failures.withLock { $0.append("\(error)") }
        }
      }
    }
    #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
    for name in ["seq", "par"] {
      let assembled = try Self.run(["assemble", dir.path + "/" + name])
      #expect(assembled.status == 0, "\(assembled.stderr)")
      #expect(assembled.stdout.contains("4 partitions assembled"))
      let got = try Self.files(dir.path + "/" + name)
      #expect(Set(got.keys) == Set(expected.keys), "\(name)")
      for (file, bytes) in expected { #expect(got[file] == bytes, "\(name)/\(file)") }
    }
    // Nothing but the two outputs and the single run beside them.
    #expect(
      Set(try FileManager.default.contentsOfDirectory(atPath: dir.path))
        == ["single", "seq", "par"])
  }

  @Test("assemble names a missing or incomplete partition and leaves the folder as it was")
  func missingOrIncomplete() throws {
    let dir = TemporaryDirectory()
    let recipe = Repository.parity + "/recipes/ties.yml"
    let out = dir.path + "/out"
    let common = ["--shard-size", "200K", "--no-cache", "--quiet"]
    for i in [0, 1, 3] {
      #expect(try Self.run(["run", recipe, out] + common + ["--partition", "\(i)/4"]).status == 0)
    }
    let missing = try Self.run(["assemble", out])
    #expect(missing.status == 1)
    #expect(missing.stderr.contains("partition 2/4 is missing"), "\(missing.stderr)")
    #expect(try Self.run(["run", recipe, out] + common + ["--partition", "2/4"]).status == 0)
    // A shard gone from a finished partition.
    let folder = out + "/partition-1-of-4"
    let shard = try #require(
      try FileManager.default.contentsOfDirectory(atPath: folder).first {
        $0.hasSuffix(".safetensors")
      })
    try FileManager.default.moveItem(atPath: folder + "/" + shard, toPath: dir.path + "/" + shard)
    let before = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
    let incomplete = try Self.run(["assemble", out])
    #expect(incomplete.status == 1)
    #expect(
      incomplete.stderr.contains("partition 1/4 is incomplete")
        && incomplete.stderr.contains(shard),
      "\(incomplete.stderr)")
    #expect(try FileManager.default.contentsOfDirectory(atPath: out).sorted() == before)
    // Put back, it assembles; a partition folder given to another merge is refused.
    try FileManager.default.moveItem(atPath: dir.path + "/" + shard, toPath: folder + "/" + shard)
    #expect(try Self.run(["assemble", out]).status == 0)
    let again = try Self.run(["run", recipe, out] + common + ["--partition", "0/4"])
    #expect(again.status == 1 && again.stderr.contains("already assembled"), "\(again.stderr)")
    // A folder with files of its own is not a place for partitions.
    dir.write("mine/notes.txt", "keep")
    let foreign = try Self.run(
      ["run", recipe, dir.path + "/mine"] + common + ["--partition", "0/2"])
    #expect(foreign.status == 1 && foreign.stderr.contains("notes.txt"), "\(foreign.stderr)")
    #expect(try String(contentsOfFile: dir.path + "/mine/notes.txt", encoding: .utf8) == "keep")
    #expect(try Self.run(["run", recipe, out, "--partition", "4/4"]).status == 64)
  }

  /// The child of mapping `node` at `key`.
  func child(_ node: YAMLNode?, _ key: String) -> YAMLNode? {
    node?.mapping?.first { $0.key.scalar?.value == key }?.value
  }

  /// PATH with the built `merge` first, as the examples call it by name.
  var path: String {
    FileSystem.directoryName(Repository.mergeExecutable) + ":"
      + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
  }

  /// Runs each example's partition commands with its scheduler's index variable set, then
  /// assembles; the output is the single run's.
  @Test("the Slurm, Kubernetes and GitHub Actions examples run as shell and assemble the merge")
  func examples() throws {
    let dir = TemporaryDirectory()
    let recipe = Repository.parity + "/recipes/ties.yml"
    let single = try Self.run(["run", recipe, dir.path + "/single", "--no-cache", "--quiet"])
    #expect(single.status == 0)
    let expected = try Self.files(dir.path + "/single")
    let examples = Repository.root + "/Examples/scale"
    let base = ["PATH": path, "RECIPE": recipe, "MERGE_CACHE_DIR": dir.path + "/cache"]

    // Slurm: the job array script, once per array task.
    for i in 0..<4 {
      let run = try runProcess(
        "/bin/bash", [examples + "/slurm.sh"],
        environment: base.merging([
          "OUTPUT": dir.path + "/slurm", "MERGE": Repository.mergeExecutable,
          "SLURM_ARRAY_TASK_ID": "\(i)", "SLURM_ARRAY_TASK_COUNT": "4",
        ]) { $1 })
      #expect(run.status == 0, "slurm \(i): \(run.stderr)")
    }

    // Kubernetes: the container's command and arguments, once per completion index.
    let job = try YAMLParser.parse(
      String(contentsOfFile: examples + "/kubernetes.yml", encoding: .utf8)
    ).documents.first?.root
    let spec = child(job, "spec")
    #expect(child(spec, "completionMode")?.scalar?.value == "Indexed")
    let completions = try #require(child(spec, "completions")?.scalar.flatMap { Int($0.value) })
    let container = try #require(
      child(child(child(spec, "template"), "spec"), "containers")?.sequence?.first)
    let command = child(container, "command")?.sequence?.compactMap { $0.scalar?.value } ?? []
    let args = child(container, "args")?.sequence?.compactMap { $0.scalar?.value } ?? []
    try #require(!command.isEmpty && !args.isEmpty)
    var env: [String: String] = [:]
    for item in child(container, "env")?.sequence ?? [] {
      if let name = child(item, "name")?.scalar?.value {
        env[name] = child(item, "value")?.scalar?.value
      }
    }
    #expect(env["PARTITIONS"] == "\(completions)")
    for i in 0..<completions {
      let run = try runProcess(
        command[0], Array(command.dropFirst()) + args,
        environment: base.merging(env) { $1 }.merging([
          "RECIPE": recipe, "OUTPUT": dir.path + "/kubernetes", "JOB_COMPLETION_INDEX": "\(i)",
        ]) { $1 })
      #expect(run.status == 0, "kubernetes \(i): \(run.stderr)")
    }

    // GitHub Actions: each matrix job's run steps, with the matrix value put in, then the
    // assemble job's.
    let workflow = try YAMLParser.parse(
      String(contentsOfFile: examples + "/github-actions.yml", encoding: .utf8)
    ).documents.first?.root
    var workflowEnv: [String: String] = [:]
    for pair in child(workflow, "env")?.mapping ?? [] {
      if let key = pair.key.scalar?.value { workflowEnv[key] = pair.value.scalar?.value }
    }
    workflowEnv["RECIPE"] = recipe
    workflowEnv["OUTPUT"] = dir.path + "/actions"
    let jobs = child(workflow, "jobs")
    let matrix =
      child(child(child(child(jobs, "partition"), "strategy"), "matrix"), "partition")?.sequence?
      .compactMap { $0.scalar?.value } ?? []
    func steps(_ job: String) -> [String] {
      (child(child(jobs, job), "steps")?.sequence ?? []).compactMap {
        child($0, "run")?.scalar?.value
      }
    }
    #expect(matrix.count == Int(workflowEnv["PARTITIONS"] ?? ""))
    for value in matrix {
      for script in steps("partition") {
        let run = try runProcess(
          "/bin/bash",
          ["-e", "-c", script.replacingOccurrences(of: "${{ matrix.partition }}", with: value)],
          environment: base.merging(workflowEnv) { $1 })
        #expect(run.status == 0, "actions \(value): \(run.stderr)")
      }
    }
    for script in steps("assemble") {
      let run = try runProcess(
        "/bin/bash", ["-e", "-c", script], environment: base.merging(workflowEnv) { $1 })
      #expect(run.status == 0, "actions assemble: \(run.stderr)")
    }

    for name in ["slurm", "kubernetes"] {
      #expect(try Self.run(["assemble", dir.path + "/" + name]).status == 0, "\(name)")
    }
    for name in ["slurm", "kubernetes", "actions"] {
      #expect(try Self.files(dir.path + "/" + name) == expected, "\(name)")
    }
  }
}
