import Foundation
import MergeModel
import Testing
import _TestSupport

/// Faults injected into real `merge` processes.
///
/// Signals mid-write, an input truncated under its mapping, a full disk, FIFOs and devices where
/// files belong: each leaves nothing behind and says what happened.
@Suite struct FaultTests {
  /// A workspace with its own copies of the tiny models (so that tests may damage them) and a
  /// TIES recipe over them.
  final class Workspace: Sendable {
    let directory = TemporaryDirectory()
    var path: String { directory.path }
    var recipe: String { path + "/ties.yml" }

    init() throws {
      for model in ["base", "ft0", "ft1", "ft2"] {
        try FileManager.default.copyItem(
          atPath: Repository.tinyLlama + "/" + model, toPath: path + "/models/" + model)
      }
      directory.write(
        "ties.yml",
        """
        merge_method: ties
        base_model: models/base
        models:
          - {model: models/ft0, parameters: {weight: 1, density: 0.5}}
          - {model: models/ft1, parameters: {weight: 0.5, density: 0.7}}
          - {model: models/ft2, parameters: {weight: 0.5, density: 0.3}}
        """)
    }

    /// The names in the workspace besides the models and the recipe.
    func leftovers() throws -> [String] {
      try FileManager.default.contentsOfDirectory(atPath: path).filter {
        $0 != "models" && $0 != "ties.yml"
      }.sorted()
    }
  }

  /// Starts `merge` with `arguments`, its output discarded but for standard error.
  static func start(_ arguments: [String], shell: String? = nil) throws -> (Process, Pipe) {
    let process = Process()
    let err = Pipe()
    if let shell {
      process.executableURL = URL(fileURLWithPath: "/bin/bash")
      process.arguments =
        ["-c", shell + " \"$@\"", "merge", Repository.mergeExecutable] + arguments
    } else {
      process.executableURL = URL(fileURLWithPath: Repository.mergeExecutable)
      process.arguments = arguments
    }
    process.standardOutput = FileHandle.nullDevice
    process.standardError = err
    try process.run()
    return (process, err)
  }

  /// Waits up to `seconds` for `condition`, polling every half millisecond.
  static func wait(seconds: Double, until condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
      if try condition() { return true }
      usleep(500)
    }
    return false
  }

  /// Runs `process` in short steps until `condition` holds while it is stopped.
  ///
  /// Each step is a fifth of a millisecond, with the process stopped (`SIGSTOP`) between them,
  /// for up to `seconds`; returns whether `condition` held. The process is left stopped then
  /// (`SIGCONT` resumes it).
  static func step(_ process: Process, seconds: Double, until condition: () -> Bool) -> Bool {
    let pid = process.processIdentifier
    // Its state: the field after the command's name in /proc/PID/stat ("X" once it is gone).
    func state() -> Character {
      let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
      guard let close = stat.lastIndex(of: ")") else { return "X" }
      return stat[close...].dropFirst(2).first ?? "X"
    }
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
      kill(pid, SIGSTOP)
      _ = wait(seconds: 1) { "TtZX".contains(state()) }
      guard "Tt".contains(state()) else { return false }
      if condition() { return true }
      kill(pid, SIGCONT)
      usleep(200)
    }
    return false
  }

  /// Whether the hidden output folder of `out` exists in `dir`, holding its shard.
  static func writing(_ dir: String) throws -> Bool {
    try FileManager.default.contentsOfDirectory(atPath: dir).contains {
      $0.hasPrefix(".out.partial-")
        && FileManager.default.fileExists(atPath: dir + "/" + $0 + "/model.safetensors")
    }
  }

  @Test(
    "SIGINT or SIGTERM mid-write stops the run, removes its hidden folder and lock, exit 128+N",
    arguments: [SIGINT, SIGTERM])
  func interrupt(_ signal: Int32) throws {
    let workspace = try Workspace()
    let (process, err) = try Self.start([
      "run", workspace.recipe, workspace.path + "/out", "--no-cache", "--threads", "1",
    ])
    #expect(try Self.wait(seconds: 20) { try Self.writing(workspace.path) })
    kill(process.processIdentifier, signal)
    process.waitUntilExit()
    let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    #expect(process.terminationReason == .exit)
    #expect(process.terminationStatus == 128 + signal, "\(message)")
    let name = signal == SIGINT ? "SIGINT" : "SIGTERM"
    #expect(message == "error: interrupted by \(name); the output was not written\n")
    #expect(try workspace.leftovers() == [])
  }

  @Test("two runs into one OUTPUT at once: one writes it, the other is refused, nothing is lost")
  func concurrentRuns() throws {
    let workspace = try Workspace()
    let out = workspace.path + "/out"
    let runs = try (0..<2).map { _ in
      try Self.start(["run", workspace.recipe, out, "--no-cache", "--threads", "1"])
    }
    var statuses: [Int32] = []
    var messages: [String] = []
    for (process, err) in runs {
      messages.append(
        String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
      process.waitUntilExit()
      statuses.append(process.terminationStatus)
    }
    #expect(statuses.sorted() == [0, 1], "\(messages)")
    // Refused by the lock while the other writes, or by its finished output (no --force).
    let refusal = messages[statuses.firstIndex(of: 1) ?? 0]
    #expect(
      refusal.contains("is writing it") || refusal.contains("pass --force to replace it"),
      "\(refusal)")
    #expect(try workspace.leftovers() == ["out"])
    #expect(try SafetensorsHeader(path: out + "/model.safetensors").tensors.count == 39)
  }

  @Test("an input truncated under its mapping: a clear error, exit 1, nothing left behind")
  func truncatedInput() throws {
    let workspace = try Workspace()
    let input = workspace.path + "/models/ft1/model.safetensors"
    let (process, err) = try Self.start([
      "run", workspace.recipe, workspace.path + "/out", "--no-cache", "--threads", "1",
    ])
    // Truncate the file as soon as the run has mapped it (and before it has read it all): the
    // run goes in short steps, stopped between them, until it is seen stopped with the file
    // mapped. /proc/PID/maps is read to its end: it reports a size of 0, and a read of that
    // size saw only its first page, which held the file's mapping in about half the runs.
    let maps = "/proc/\(process.processIdentifier)/maps"
    let mapped = Self.step(process, seconds: 20) {
      let text = FileHandle(forReadingAtPath: maps)?.readDataToEndOfFile() ?? Data()
      return String(decoding: text, as: UTF8.self).contains(input)
    }
    #expect(mapped)
    truncate(input, 4096)
    kill(process.processIdentifier, SIGCONT)
    process.waitUntilExit()
    let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    #expect(process.terminationReason == .exit)
    #expect(process.terminationStatus == 1, "\(message)")
    #expect(message.contains("truncated"), "\(message)")
    #expect(try workspace.leftovers() == [])
  }

  @Test("a full disk (a 100 KB file-size limit) fails before any tensor, leaving nothing")
  func fullDisk() throws {
    let workspace = try Workspace()
    let (process, err) = try Self.start(
      ["run", workspace.recipe, workspace.path + "/out", "--no-cache"], shell: "ulimit -f 100; exec"
    )
    process.waitUntilExit()
    let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    #expect(process.terminationReason == .exit)
    #expect(process.terminationStatus == 1, "\(message)")
    #expect(message.contains("fallocate"), "\(message)")
    #expect(message.contains("File too large"), "\(message)")
    #expect(try workspace.leftovers() == [])
  }

  @Test("'.' and '' are not output folders: refused before any work")
  func outputNames() throws {
    let workspace = try Workspace()
    for output in [".", ""] {
      let result = try runProcess(
        Repository.mergeExecutable, ["run", workspace.recipe, output, "--no-cache"],
        currentDirectory: workspace.path)
      #expect(result.status == 1)
      #expect(result.stderr.contains("is not the name of a folder to create"), "\(result.stderr)")
    }
    #expect(try workspace.leftovers() == [])
  }

  @Test("FIFOs and devices where files belong are refused at once, never read")
  func specialFiles() throws {
    let workspace = try Workspace()
    let base = workspace.path + "/models/base"
    // The donor's tokenizer as a FIFO, then as /dev/zero, then dangling, then a folder.
    try FileManager.default.removeItem(atPath: base + "/tokenizer.json")
    #expect(mkfifo(base + "/tokenizer.json", 0o644) == 0)
    var check = try runProcess(Repository.mergeExecutable, ["check", workspace.recipe])
    #expect(check.status == 1)
    #expect(
      check.stderr.contains("tokenizer.json' is a FIFO, not a regular file"), "\(check.stderr)")
    for (target, kind) in [
      ("/dev/zero", "a character device"),
      ("/nonexistent", "a symbolic link to '/nonexistent', which does not exist"),
    ] {
      try FileManager.default.removeItem(atPath: base + "/tokenizer.json")
      try FileManager.default.createSymbolicLink(
        atPath: base + "/tokenizer.json", withDestinationPath: target)
      check = try runProcess(Repository.mergeExecutable, ["check", workspace.recipe])
      #expect(check.status == 1)
      #expect(check.stderr.contains("tokenizer.json"), "\(check.stderr)")
      #expect(check.stderr.contains(kind), "\(check.stderr)")
    }
    try FileManager.default.removeItem(atPath: base + "/tokenizer.json")
    try FileManager.default.createDirectory(
      atPath: base + "/tokenizer.json", withIntermediateDirectories: false)
    check = try runProcess(Repository.mergeExecutable, ["check", workspace.recipe])
    #expect(check.status == 1)
    #expect(check.stderr.contains("tokenizer.json' is a folder"), "\(check.stderr)")
    // config.json as a FIFO: check answers (an error) instead of waiting for a writer.
    try FileManager.default.removeItem(atPath: base + "/tokenizer.json")
    let config = workspace.path + "/models/ft0/config.json"
    try FileManager.default.removeItem(atPath: config)
    #expect(mkfifo(config, 0o644) == 0)
    let (process, _) = try Self.start(["check", workspace.recipe])
    let finished = Self.wait(seconds: 20) { !process.isRunning }
    if !finished { process.terminate() }
    #expect(finished)
    #expect(process.terminationStatus == 1)
  }

  @Test("a FIFO in the cache folder is a cache miss, not a hang")
  func fifoCacheEntry() throws {
    let workspace = try Workspace()
    let cache = workspace.path + "/cache"
    var result = try runProcess(
      Repository.mergeExecutable,
      ["run", workspace.recipe, workspace.path + "/a", "--cache", cache])
    #expect(result.status == 0)
    let entries = try FileManager.default.contentsOfDirectory(atPath: cache).filter {
      !$0.hasPrefix(".")
    }
    for entry in entries {
      try FileManager.default.removeItem(atPath: cache + "/" + entry)
      #expect(mkfifo(cache + "/" + entry, 0o644) == 0)
    }
    let (process, _) = try Self.start(
      ["run", workspace.recipe, workspace.path + "/b", "--cache", cache])
    let finished = Self.wait(seconds: 30) { !process.isRunning }
    if !finished { process.terminate() }
    #expect(finished)
    #expect(process.terminationStatus == 0)
    result = try runProcess(
      "/usr/bin/cmp",
      [
        workspace.path + "/a/model.safetensors", workspace.path + "/b/model.safetensors",
      ])
    #expect(result.status == 0)
  }

  @Test(
    "commit makes every file durable and renames without replacing anything (strace)",
    .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/strace"), "needs strace"))
  func durability() throws {
    let workspace = try Workspace()
    let log = workspace.path + "/strace.log"
    for force in [false, true] {
      let result = try runProcess(
        "/usr/bin/strace",
        [
          "-f", "-e", "trace=fsync,renameat2,rename", "-o", log, Repository.mergeExecutable, "run",
          workspace.recipe, workspace.path + "/out", "--no-cache",
        ] + (force ? ["--force"] : []))
      #expect(result.status == 0, "\(result.stderr)")
      let calls = try String(contentsOfFile: log, encoding: .utf8)
      // The shard, the side files and the folder, then the parent after the rename.
      #expect(calls.components(separatedBy: "fsync(").count - 1 >= 6, "\(calls)")
      #expect(calls.contains(force ? "RENAME_EXCHANGE" : "RENAME_NOREPLACE"), "\(calls)")
      try FileManager.default.removeItem(atPath: log)
    }
  }

  @Test("empty cache settings are unset, never the root folder; '--cache \"\"' is a usage error")
  func emptyCacheSettings() throws {
    let workspace = try Workspace()
    let home = TemporaryDirectory()
    let process = Process()
    process.executableURL = URL(fileURLWithPath: Repository.mergeExecutable)
    process.arguments = ["run", workspace.recipe, workspace.path + "/out"]
    process.environment = ["HOME": home.path, "MERGE_CACHE_DIR": "", "XDG_CACHE_HOME": ""]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    #expect(process.terminationStatus == 0)
    let entries = try FileManager.default.contentsOfDirectory(atPath: home.path + "/.cache/merge")
    #expect(entries.count == 117)
    let usage = try runProcess(
      Repository.mergeExecutable, ["run", workspace.recipe, workspace.path + "/x", "--cache", ""])
    #expect(usage.status == 64)
    #expect(usage.stderr.hasPrefix("Error: The value '' is invalid for '--cache <dir>'"))
  }
}
