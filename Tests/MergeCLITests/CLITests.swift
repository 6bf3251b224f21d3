import Foundation
import MergeModel
import MergeRecipe
import Testing
import _TestSupport

@testable import MergeCLI

/// Runs `merge` in-process and returns its status and output.
func merge(_ arguments: String...) -> (status: Int32, out: String, err: String) {
  let capture = CapturingConsole()
  let status = MergeCommand.run(arguments, console: capture.console)
  return (status, capture.standardOutput, capture.standardError)
}

/// Compares `actual` with `Snapshots/<name>.txt`; `RECORD_SNAPSHOTS=1` rewrites the file.
func assertSnapshot(
  _ actual: String, named name: String, sourceLocation: Testing.SourceLocation = #_sourceLocation
) throws {
  let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
    "Snapshots")
  let file = folder.appendingPathComponent(name + ".txt")
  if ProcessInfo.processInfo.environment["RECORD_SNAPSHOTS"] != nil {
    try actual.write(to: file, atomically: true, encoding: .utf8)
  }
  let expected = try String(contentsOf: file, encoding: .utf8)
  #expect(
    actual == expected, "snapshot \(name) differs; re-record with RECORD_SNAPSHOTS=1",
    sourceLocation: sourceLocation)
}

@Suite struct CLITests {
  @Test("merge --help reads like swift-argument-parser's")
  func rootHelp() throws {
    let result = merge("--help")
    #expect(result.status == 0)
    try assertSnapshot(result.out, named: "merge-help")
    #expect(merge().out == result.out)
  }

  @Test("merge check --help")
  func checkHelp() throws {
    let result = merge("check", "--help")
    #expect(result.status == 0)
    try assertSnapshot(result.out, named: "merge-check-help")
    #expect(merge("help", "check").out == result.out)
  }

  @Test("help for a subcommand that does not exist is a usage error")
  func helpUnknownSubcommand() {
    let result = merge("help", "chek")
    #expect(result.status == 64)
    #expect(result.out == "")
    #expect(
      result.err == """
        Error: Unknown subcommand 'chek'. Did you mean 'check'?
        Usage: merge <subcommand>
          See 'merge --help' for more information.

        """)
  }

  @Test("a good recipe prints one summary line and exits 0")
  func checkSucceeds() {
    let recipe = Repository.parity + "/recipes/ties.yml"
    let result = merge("check", recipe)
    #expect(result.status == 0)
    #expect(result.err == "")
    #expect(result.out == "\(recipe): ok — ties, 3 models, base ../models/tiny-llama/base\n")
  }

  @Test("a bad recipe prints located diagnostics and exits 1")
  func checkFails() {
    let dir = TemporaryDirectory()
    let path = dir.write("r.yml", "merge_method: frobnicate\nmodels:\n  - model: ./nowhere\n")
    let result = merge("check", path)
    #expect(result.status == 1)
    #expect(result.out == "")
    #expect(result.err.contains("\(path):1:15: error: unknown merge method 'frobnicate'\n"))
    #expect(
      result.err.contains(
        "\(path):3:12: error: model folder './nowhere' does not exist"
      ))
    #expect(result.err.hasSuffix("2 errors\n"))
  }

  @Test("a recipe that does not exist is exit 1 with the path")
  func missingRecipe() {
    let result = merge("check", "/nonexistent/recipe.yml")
    #expect(result.status == 1)
    #expect(
      result.err.hasPrefix(
        "/nonexistent/recipe.yml: error: cannot read the recipe: /nonexistent/recipe.yml: open failed: No such file or directory"
      ))
  }

  struct UsageCase: Sendable, CustomTestStringConvertible {
    var arguments: [String]
    var error: String
    var testDescription: String { arguments.joined(separator: " ") }
  }

  @Test(
    "usage errors exit 64 with the usage line",
    arguments: [
      UsageCase(arguments: ["check"], error: "Error: Missing expected argument '<recipe>'"),
      UsageCase(
        arguments: ["check", "r.yml", "--alow-unknown"],
        error: "Error: Unknown option '--alow-unknown'. Did you mean '--allow-unknown'?"),
      UsageCase(arguments: ["check", "a", "b"], error: "Error: Unexpected argument 'b'"),
      UsageCase(
        arguments: ["chek"], error: "Error: Unknown subcommand 'chek'. Did you mean 'check'?"),
      UsageCase(arguments: ["--frobnicate"], error: "Error: Unknown option '--frobnicate'"),
    ])
  func usageErrors(_ c: UsageCase) {
    let capture = CapturingConsole()
    let status = MergeCommand.run(c.arguments, console: capture.console)
    #expect(status == 64)
    #expect(capture.standardError.hasPrefix(c.error))
    #expect(capture.standardError.contains("Usage: merge"))
    #expect(capture.standardError.contains("--help' for more information."))
  }

  @Test("the built binary runs check end to end with the documented exit codes")
  func binary() throws {
    let exe = Repository.mergeExecutable
    try #require(FileManager.default.isExecutableFile(atPath: exe), "build merge first: \(exe)")
    let ok = try runProcess(exe, ["check", Repository.parity + "/recipes/slerp.yml"])
    #expect(ok.status == 0)
    #expect(ok.stdout.hasSuffix("ok — slerp, 1 model, base ../models/tiny-llama/ft0\n"))
    let dir = TemporaryDirectory()
    let bad = dir.write("bad.yml", "merge_method: ties\nmodels: [\n")
    let failed = try runProcess(exe, ["check", bad])
    #expect(failed.status == 1)
    #expect(failed.stderr.contains("error: YAML syntax error"))
    let usage = try runProcess(exe, ["check"])
    #expect(usage.status == 64)
    let version = try runProcess(exe, ["--version"])
    #expect(version.status == 0)
    #expect(version.stdout == MergeCommand.version + "\n")
  }
}

/// `--format json` and `--format github`: findings and summaries for machines.
@Suite struct AnnotationTests {
  static let bad = """
    merge_method: linearr
    models:
      - model: models/ft0
        parameters: {weight: 1, dennsity: 2}
    """

  @Test("check --format github: one workflow command per finding, located, notes after it")
  func github() throws {
    let dir = TemporaryDirectory()
    dir.link("models", to: Repository.tinyLlama)
    let recipe = dir.write("bad.yml", Self.bad)
    let result = merge("check", recipe, "--format", "github")
    #expect(result.status == 1)
    let lines = result.out.split(separator: "\n").map(String.init)
    #expect(lines.count == 2)
    let file = Annotations.property(recipe)
    #expect(
      lines.first?.hasPrefix(
        "::error file=\(file),line=1,col=15,endLine=1,endColumn=22,title=merge unknown-method::unknown merge method 'linearr'; did you mean 'linear'?%0Anote: known methods: linear, "
      )
        == true, "\(lines)")
    #expect(lines.last?.hasPrefix("::error file=\(file),line=4,col=29,") == true)
    #expect(Annotations.property("a,b:c%\n") == "a%2Cb%3Ac%25%0A")
    // A sound recipe prints nothing and exits 0.
    let good = merge("check", Repository.parity + "/recipes/ties.yml", "--format", "github")
    #expect(good.status == 0 && good.out.isEmpty)
  }

  @Test("check --format json: every diagnostic with id, severity, place, message and notes")
  func json() throws {
    let dir = TemporaryDirectory()
    dir.link("models", to: Repository.tinyLlama)
    let recipe = dir.write("bad.yml", Self.bad)
    let result = merge("check", recipe, "--format", "json")
    #expect(result.status == 1)
    let value = try JSONValue.parse(result.out)
    #expect(value["ok"] == .bool(false))
    #expect(value["errors"]?.intValue == 2)
    let first = value["diagnostics"]?.arrayValue?.first
    #expect(first?["id"]?.stringValue == "unknown-method")
    #expect(first?["severity"]?.stringValue == "error")
    #expect(first?["line"]?.intValue == 1)
    #expect(first?["column"]?.intValue == 15)
    #expect(
      first?["message"]?.stringValue == "unknown merge method 'linearr'; did you mean 'linear'?")
    #expect(first?["notes"]?.arrayValue?.count == 1)
    let bad = merge("check", recipe, "--format", "xml")
    #expect(bad.status == 64)
  }

  @Test("run --format json prints its summary as JSON")
  func runJSON() throws {
    let dir = TemporaryDirectory()
    let result = merge(
      "run", Repository.parity + "/recipes/linear.yml", dir.path + "/out", "--format", "json",
      "--no-cache")
    #expect(result.status == 0, "\(result.err)")
    let value = try JSONValue.parse(result.out)
    #expect(value["tensors"]?.intValue == 39)
    #expect(value["shards"]?.intValue == 1)
    #expect(value["lock"] == .null)
  }
}

/// Output for people: progress in logs, colour on terminals.
@Suite struct EverydayOutputTests {
  @Test(
    "off a terminal, progress is a plain line now and then and one at the end; --quiet has none")
  func logProgress() throws {
    let dir = TemporaryDirectory()
    let result = merge(
      "run", Repository.parity + "/recipes/linear.yml", dir.path + "/out", "--no-cache")
    #expect(result.status == 0)
    let lines = result.err.split(separator: "\n")
    #expect(lines.last?.hasPrefix("[39/39] 1.25 MB of 1.25 MB in ") == true, "\(result.err)")
    #expect(!result.err.contains("\u{1B}"))
    let quiet = merge(
      "run", Repository.parity + "/recipes/linear.yml", dir.path + "/q", "--no-cache", "--quiet")
    #expect(quiet.err.isEmpty)
  }

  @Test("diagnostics are coloured on a terminal, and not with NO_COLOR or TERM=dumb")
  func colour() throws {
    let diagnostic = Diagnostic(
      Diagnostic.Message("x", "bad value"), file: "r.yml",
      at: SourceRange(
        start: MergeRecipe.SourceLocation(line: 1, column: 4),
        end: MergeRecipe.SourceLocation(line: 1, column: 7)),
      notes: [Diagnostic.Note("a note")])
    let plain = DiagnosticRenderer(sources: ["r.yml": "ab: xyz\n"]).render(diagnostic)
    #expect(plain == "r.yml:1:4: error: bad value\nab: xyz\n   ^~~\n  note: a note\n")
    let coloured = DiagnosticRenderer(sources: ["r.yml": "ab: xyz\n"], colored: true).render(
      diagnostic)
    #expect(
      coloured
        == "r.yml:1:4: \u{1B}[1;31merror:\u{1B}[0m bad value\nab: xyz\n   \u{1B}[1;32m^~~\u{1B}[0m\n  \u{1B}[1;36mnote:\u{1B}[0m a note\n"
    )
    // When: a terminal, unless NO_COLOR is set and not empty, or TERM is dumb.
    #expect(Console.coloring(terminal: true, noColor: nil, term: "xterm"))
    #expect(Console.coloring(terminal: true, noColor: "", term: nil))
    #expect(!Console.coloring(terminal: true, noColor: "1", term: "xterm"))
    #expect(!Console.coloring(terminal: true, noColor: nil, term: "dumb"))
    #expect(!Console.coloring(terminal: false, noColor: nil, term: "xterm"))
  }
}

/// `merge cache ls | prune | clear`.
@Suite struct CacheCommandTests {
  @Test(
    "prune removes the least recently used entries down to the limit; clear removes entries only")
  func prune() throws {
    let dir = TemporaryDirectory()
    let cache = dir.path + "/cache"
    try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
    // Four entries of 1,000 bytes, used at times 1000, 2000, 3000, 4000 (seconds since 1970).
    for (i, used) in [3000, 1000, 4000, 2000].enumerated() {
      let name = String(repeating: String(i), count: 32)
      let path = dir.write("cache/" + name, String(repeating: "x", count: 1000))
      try FileManager.default.setAttributes(
        [.modificationDate: Date(timeIntervalSince1970: Double(used))], ofItemAtPath: path)
    }
    dir.write("cache/calibration.json", "{}")
    dir.write("cache/notes.txt", "mine")
    let ls = merge("cache", "ls", "--cache", cache, "--limit", "2500")
    #expect(ls.out == "\(cache): 4 entries, 4.00 KB (limit 2.50 KB)\n", "\(ls.out)\(ls.err)")
    let pruned = merge("cache", "prune", "--cache", cache, "--limit", "2500")
    #expect(pruned.status == 0)
    #expect(pruned.out.hasPrefix("\(cache): removed 2 least recently used entries, 2.00 KB"))
    let left = try FileManager.default.contentsOfDirectory(atPath: cache).sorted()
    // Entries 1 (used at 1000) and 3 (2000) went; 0 and 2 stay, and so do the other files.
    #expect(
      left == [
        String(repeating: "0", count: 32), String(repeating: "2", count: 32), "calibration.json",
        "notes.txt",
      ])
    let cleared = merge("cache", "clear", "--cache", cache)
    #expect(cleared.out == "\(cache): removed 2 entries, 2.00 KB\n")
    #expect(
      try FileManager.default.contentsOfDirectory(atPath: cache).sorted() == [
        "calibration.json", "notes.txt",
      ])
    #expect(merge("cache", "tidy", "--cache", cache).status == 64)
  }

  @Test("a run keeps the cache within MERGE_CACHE_LIMIT")
  func limitAfterRun() throws {
    let dir = TemporaryDirectory()
    let cache = dir.path + "/cache"
    let first = try runProcess(
      Repository.mergeExecutable,
      ["run", Repository.parity + "/recipes/ties.yml", dir.path + "/a", "--cache", cache, "-q"])
    #expect(first.status == 0, "\(first.stderr)")
    let entries = try FileManager.default.contentsOfDirectory(atPath: cache)
    #expect(entries.count == 117)
    let limited = try runProcess(
      Repository.mergeExecutable,
      ["run", Repository.parity + "/recipes/ties.yml", dir.path + "/b", "--cache", cache, "-q"],
      environment: ["MERGE_CACHE_LIMIT": "10K"])
    #expect(limited.status == 0, "\(limited.stderr)")
    let sizes = try FileManager.default.contentsOfDirectory(atPath: cache).map {
      (try FileManager.default.attributesOfItem(atPath: cache + "/" + $0)[.size] as? Int) ?? 0
    }
    #expect(sizes.reduce(0, +) <= 10_000)
    #expect(!sizes.isEmpty)
  }
}

/// `merge diff` and `merge apply` on the command line.
@Suite struct TaskVectorCommandTests {
  @Test("diff writes the folder; apply takes VECTOR:SCALE arguments between the base and OUT")
  func commands() throws {
    let dir = TemporaryDirectory()
    let models = Repository.tinyLlama
    let diff = merge("diff", models + "/base", models + "/ft0", dir.path + "/tau")
    #expect(diff.status == 0, "\(diff.err)")
    #expect(diff.out.hasPrefix(dir.path + "/tau: τ of 39 tensors, float32, "))
    #expect(
      try FileManager.default.contentsOfDirectory(atPath: dir.path + "/tau").sorted() == [
        "task_vector.json", "task_vector.safetensors",
      ])
    let apply = merge(
      "apply", models + "/base", dir.path + "/tau:-1", dir.path + "/tau:1.0", dir.path + "/out")
    #expect(apply.status == 0, "\(apply.err)")
    #expect(apply.out == dir.path + "/out: 39 tensors, base + -1.0·τ + 1.0·τ\n")
    #expect(
      FileManager.default.contents(atPath: dir.path + "/out/model.safetensors")
        == FileManager.default.contents(atPath: models + "/base/model.safetensors"))
    let missing = merge("apply", models + "/base", dir.path + "/out2")
    #expect(missing.status == 64)
    #expect(missing.err.contains("Missing expected argument '<vector>'"), "\(missing.err)")
    let bad = merge("diff", models + "/base", models + "/ft0", dir.path + "/t2", "--density", "2")
    #expect(bad.status == 64)
    let notTV = merge("apply", models + "/base", models + "/ft1", dir.path + "/out3")
    #expect(notTV.status == 1)
    #expect(notTV.err.contains("not a task-vector folder"), "\(notTV.err)")
  }
}

extension TaskVectorCommandTests {
  @Test("merge analyze --json has models, cosine, sign_conflicts and tensors")
  func analyze() throws {
    let models = Repository.tinyLlama
    let result = merge("analyze", models + "/base", models + "/ft0", models + "/ft1", "--json")
    #expect(result.status == 0, "\(result.err)")
    let value = try JSONValue.parse(result.out)
    #expect(
      value["models"]?.arrayValue?.compactMap(\.stringValue) == [models + "/ft0", models + "/ft1"])
    #expect(value["cosine"]?.arrayValue?.count == 2)
    #expect(value["sign_conflicts"]?.stringValue == nil && value["sign_conflicts"] != nil)
    let first = value["tensors"]?.arrayValue?.first
    #expect(first?["name"]?.stringValue != nil)
    #expect(first?["norm"]?.arrayValue?.count == 2 && first?["changed"]?.arrayValue?.count == 2)
    let text = merge("analyze", models + "/base", models + "/ft0")
    #expect(text.status == 0)
    #expect(text.out.contains("sign conflicts: "))
    #expect(merge("analyze", models + "/base").status == 64)
    // --html never goes into a model folder it reads, a missing folder, or over a folder.
    let dir = TemporaryDirectory()
    for bad in [models + "/ft0/report.html", dir.path + "/none/report.html", dir.path] {
      let refused = merge("analyze", models + "/base", models + "/ft0", "--html", bad)
      #expect(refused.status == 1 && refused.err.contains("--html"), "\(bad): \(refused.err)")
    }
    #expect(FileSystem.kind(of: models + "/ft0/report.html") == .missing)
  }
}

/// Headless Chromium, where it is installed (Debian's `chromium`).
let chromiumPath = ["chromium", "chromium-browser", "google-chrome"].lazy.compactMap { name in
  (FileSystem.environment("PATH") ?? "/usr/bin").split(separator: ":").map { "\($0)/\(name)" }
    .first { FileManager.default.isExecutableFile(atPath: $0) }
}.first

/// `merge analyze --html` rendered by headless Chromium.
@Suite(
  .enabled(
    if: chromiumPath != nil,
    "needs chromium (Debian's package) to render the report; .ci/run installs it"))
struct AnalyzeReportTests {
  /// A script that measures each plot in the laid-out page.
  ///
  /// It records each plot's size and its marks (cells, lines, points) with a non-empty box. It
  /// is added to a copy of the report; the report itself has no script.
  static let probe = """
    <script>
    const found = {};
    for (const figure of document.querySelectorAll('figure')) {
      const svg = figure.querySelector('svg.plot');
      const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
      const marks = svg ? [...svg.querySelectorAll('.mark')] : [];
      const drawn = marks.filter(m => { const b = m.getBBox(); return b.width > 0 || b.height > 0; });
      const text = svg ? [...svg.querySelectorAll('text')].filter(t => t.getComputedTextLength() > 0) : [];
      found[figure.id] = {width: box.width, height: box.height, marks: drawn.length, text: text.length,
        caption: (figure.querySelector('figcaption') || {}).textContent || ''};
    }
    document.body.setAttribute('data-probe', JSON.stringify(found));
    </script>
    """

  static func number(_ v: JSONValue?) -> Double {
    if case .number(let text)? = v { return Double(text) ?? 0 }
    return 0
  }

  @Test("the --html report renders every plot, non-empty, with titles and axis labels")
  func rendersInChromium() throws {
    let dir = TemporaryDirectory()
    let models = Repository.tinyLlama
    let page = dir.path + "/report.html"
    let result = merge(
      "analyze", models + "/base", models + "/ft0", models + "/ft1", models + "/ft2", "--html",
      page)
    #expect(result.status == 0, "\(result.err)")
    let html = try String(contentsOfFile: page, encoding: .utf8)
    // Self-contained: no script, and nothing fetched (the only URL is SVG's namespace).
    #expect(!html.contains("<script"))
    #expect(!html.contains("src=") && !html.contains("<link"))
    let probed = dir.path + "/probed.html"
    try html.replacingOccurrences(of: "</body>", with: Self.probe + "</body>")
      .write(toFile: probed, atomically: true, encoding: .utf8)
    let chromium = try #require(chromiumPath)
    // Bounded: a hung browser fails the test instead of the suite.
    let run = try runProcess(
      "/usr/bin/timeout",
      [
        "120", chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
        "file://" + probed,
      ])
    #expect(run.status == 0, "\(run.stderr)")
    let attribute = try #require(
      run.stdout.range(of: "data-probe=\"").map { run.stdout[$0.upperBound...] }?.prefix {
        $0 != "\""
      })
    let json = String(attribute).replacingOccurrences(of: "&quot;", with: "\"")
      .replacingOccurrences(of: "&amp;", with: "&")
    let probe = try JSONValue.parse(json)
    // Four layers: three fine-tunes' lines in two plots, 3×3 cosine cells, the conflict line,
    // nine sparsity lines.
    let expected = ["norms": 3, "cosine": 9, "conflicts": 1, "sparsity": 9]
    for (id, marks) in expected {
      let plot = try #require(probe[id], "plot \(id) missing")
      #expect(Self.number(plot["width"]) > 200, "\(id)")
      #expect(Self.number(plot["height"]) > 150, "\(id)")
      #expect(plot["marks"]?.intValue == marks, "\(id)")
      #expect((plot["text"]?.intValue ?? 0) >= 5, "\(id): axis labels and ticks")
      #expect((plot["caption"]?.stringValue ?? "").count > 10, "\(id): title")
    }
  }
}

@Suite struct ExtractLoraCommandTests {
  @Test("merge extract-lora writes the same adapter on one thread and on two; bad options exit 64")
  func deterministic() throws {
    let dir = TemporaryDirectory()
    let models = Repository.tinyLlama
    var bytes: [Data] = []
    for threads in ["1", "2"] {
      let result = merge(
        "extract-lora", models + "/base", models + "/ft1", dir.path + "/a\(threads)", "--energy",
        "0.6", "--rank", "32", "--threads", threads)
      #expect(result.status == 0, "\(result.err)")
      #expect(result.out.contains("28 modules") && result.out.contains("relative error"))
      bytes.append(
        try Data(
          contentsOf: URL(fileURLWithPath: dir.path + "/a\(threads)/adapter_model.safetensors")))
    }
    #expect(bytes[0] == bytes[1])
    #expect(
      merge("extract-lora", models + "/base", models + "/ft1", dir.path + "/b", "--rank", "0")
        .status == 64)
    #expect(
      merge("extract-lora", models + "/base", models + "/ft1", dir.path + "/b", "--energy", "1.5")
        .status == 64)
    // An existing output is refused; nothing of it is touched.
    let again = merge(
      "extract-lora", models + "/base", models + "/ft1", dir.path + "/a1", "--rank", "4")
    #expect(again.status == 1)
    #expect(
      try Data(contentsOf: URL(fileURLWithPath: dir.path + "/a1/adapter_model.safetensors"))
        == bytes[0])
  }
}
