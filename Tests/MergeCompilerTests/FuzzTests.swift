import Foundation
import MergeRecipe
import Testing
import _TestSupport

@testable import MergeCompiler

@Suite struct FuzzTests {
  /// Seconds each fuzz test runs; `FUZZ_SECONDS` raises it for longer local runs.
  static let seconds = Double(ProcessInfo.processInfo.environment["FUZZ_SECONDS"] ?? "") ?? 2

  static let fragments = [
    "merge_method: ", "ties", "slerp", "della", "passthrough", "base_model: ", "models:", "slices:",
    "modules:", "  - model: ", "models/base", "models/ft0", "parameters:", " {weight: ",
    "density: ",
    "epsilon: ", "t: ", "[0, 4]", "layer_range: ", "sources:", "- filter: mlp", "value: ", "&a ",
    "*a",
    "<<: ", "0.5", "-1", "1e309", ".nan", "~", "'", "\"", "{", "}", "[", "]", ",", ":", "- ", "\n",
    "  ", "\t", "---\n", "name: s", "!!str ", "!!float ", "? ", "|", ">", "#", "%YAML 1.1\n",
    "\u{FEFF}",
    "dtype: ", "bfloat16", "tokenizer:", "source: ", "tokens:", "kind: zero", "@rev", "+lora", "\0",
  ]

  func corpus() throws -> [String] {
    let folder = Repository.parity + "/recipes"
    return try FileManager.default.contentsOfDirectory(atPath: folder).filter {
      $0.hasSuffix(".yml")
    }
    .sorted().map { try String(contentsOfFile: folder + "/" + $0, encoding: .utf8) }
  }

  func mutate(_ text: String, _ rng: inout SplitMix64) -> String {
    var chars = Array(text.unicodeScalars)
    let edits = Int.random(in: 1...6, using: &rng)
    for _ in 0..<edits {
      let position = chars.isEmpty ? 0 : Int.random(in: 0..<chars.count, using: &rng)
      switch Int.random(in: 0..<5, using: &rng) {
      case 0 where !chars.isEmpty:
        chars.remove(at: position)
      case 1:
        let fragment = Self.fragments.randomElement(using: &rng) ?? ""
        chars.insert(contentsOf: fragment.unicodeScalars, at: position)
      case 2 where !chars.isEmpty:
        chars[position] = Unicode.Scalar(UInt8.random(in: 0x20...0x7E, using: &rng))
      case 3 where chars.count > 2:
        let end = min(chars.count, position + Int.random(in: 1...40, using: &rng))
        let slice = Array(chars[position..<end])
        chars.insert(contentsOf: slice, at: Int.random(in: 0...chars.count, using: &rng))
      default:
        if let line = text.split(separator: "\n").randomElement(using: &rng) {
          chars.insert(contentsOf: (String(line) + "\n").unicodeScalars, at: position)
        }
      }
    }
    var s = String.UnicodeScalarView()
    s.append(contentsOf: chars)
    return String(s)
  }

  func random(_ rng: inout SplitMix64) -> String {
    let count = Int.random(in: 1...60, using: &rng)
    return (0..<count).map { _ in Self.fragments.randomElement(using: &rng) ?? "" }.joined()
  }

  @Test("mutated and random recipes never crash the front end")
  func fuzzFrontEnd() throws {
    let seed = UInt64(Date().timeIntervalSince1970)
    var rng = SplitMix64(state: seed)
    // Recipes live in recipes/ beside models/, as in Tests/Parity, so that the seed recipes'
    // model paths resolve and mutations reach the deeper checks.
    let workspace = ModelWorkspace(models: Repository.examples + "/models")
    let recipePath = workspace.recipe("", name: "recipes/recipe.yml")
    let seeds = try corpus()
    let deadline = Date().addingTimeInterval(Self.seconds)
    var iterations = 0
    var rejected = 0
    while Date() < deadline {
      let text: String
      if Bool.random(using: &rng), let base = seeds.randomElement(using: &rng) {
        text = mutate(base, &rng)
      } else {
        text = random(&rng)
      }
      var options = CompileOptions()
      options.phase = .resolution
      let compilation = Compiler.compile(text: text, file: recipePath, options: options)
      if compilation.hasErrors { rejected += 1 }
      // Every diagnostic renders, whatever the input.
      _ = DiagnosticRenderer(sources: [recipePath: text]).render(compilation.diagnostics)
      iterations += 1
    }
    print("fuzz: \(iterations) inputs in \(Self.seconds) s, \(rejected) rejected, seed \(seed)")
    // The loop ran; most inputs were rejected with diagnostics, and some mutations still
    // checked clean, so the fuzzer reaches past the parser into the checker.
    #expect(iterations > 200, "seed \(seed)")
    #expect(rejected > iterations / 2, "seed \(seed)")
    #expect(rejected < iterations, "seed \(seed)")
  }
}
