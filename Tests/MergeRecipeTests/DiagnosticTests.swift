import Testing

@testable import MergeRecipe

@Suite struct DiagnosticTests {
  @Test("a diagnostic renders with its source line and a caret under the value")
  func rendering() {
    let text = "merge_method: slurp\nmodels: []\n"
    let d = Diagnostic(
      Diagnostic.Message("unknown-method", "unknown merge method 'slurp'"), file: "recipe.yaml",
      at: SourceRange(
        start: SourceLocation(line: 1, column: 15), end: SourceLocation(line: 1, column: 20)),
      notes: [Diagnostic.Note("known methods: linear, ties")])
    let rendered = DiagnosticRenderer(sources: ["recipe.yaml": text]).render(d)
    #expect(
      rendered == """
        recipe.yaml:1:15: error: unknown merge method 'slurp'
        merge_method: slurp
                      ^~~~~
          note: known methods: linear, ties

        """)
  }

  @Test("lines end where libyaml ends them: CR LF, CR, LF, NEL, LS, PS")
  func lineBreaks() throws {
    #expect(
      DiagnosticRenderer.lines(of: "a\r\nb\rc\nd\u{85}e\u{2028}f\u{2029}g")
        == ["a", "b", "c", "d", "e", "f", "g"])
    #expect(DiagnosticRenderer.lines(of: "") == [""])
    #expect(DiagnosticRenderer.lines(of: "a\n") == ["a", ""])
    // A recipe saved with CR LF (Windows) or CR (classic Mac OS) quotes the line libyaml
    // points at, as one with LF does.
    for newline in ["\n", "\r\n", "\r"] {
      let text = "merge_method: linear" + newline + "models: 3" + newline
      let (_, found) = RecipeDecoder.decode(text, file: "r.yml")
      let d = try #require(found.first, "\(newline.unicodeScalars.map(\.value))")
      #expect(d.range?.start.line == 2)
      let rendered = DiagnosticRenderer(sources: ["r.yml": text]).render(d)
      #expect(rendered.contains("number\nmodels: 3\n        ^"), "\(rendered)")
    }
  }

  @Test("a note with a location gets its own header and caret")
  func locatedNote() {
    let text = "a: 1\na: 2\n"
    let d = Diagnostic(
      Diagnostic.Message("duplicate-key", "duplicate key 'a'"), file: "r.yml",
      at: SourceRange(
        start: SourceLocation(line: 2, column: 1), end: SourceLocation(line: 2, column: 2)),
      notes: [
        Diagnostic.Note(
          "'a' first appears here",
          at: SourceRange(
            start: SourceLocation(line: 1, column: 1), end: SourceLocation(line: 1, column: 2)))
      ])
    let rendered = DiagnosticRenderer(sources: ["r.yml": text]).render(d)
    #expect(
      rendered == """
        r.yml:2:1: error: duplicate key 'a'
        a: 2
        ^
        r.yml:1:1: note: 'a' first appears here
        a: 1
        ^

        """)
  }

  @Test("identical diagnostics are reported once, sorted by position")
  func sortingAndDeduplication() {
    var bag = DiagnosticBag(file: "f")
    let late = SourceRange(at: SourceLocation(line: 5, column: 1))
    let early = SourceRange(at: SourceLocation(line: 2, column: 3))
    bag.report(Diagnostic.Message("test-b", "b"), at: late)
    bag.report(Diagnostic.Message("test-a", .warning, "a"), at: early)
    bag.report(Diagnostic.Message("test-b", "b"), at: late)
    #expect(bag.sorted.map(\.message.text) == ["a", "b"])
    #expect(bag.errorCount == 2)
    #expect(bag.warningCount == 1)
  }

  @Test("the policy decides severities by id: --allow-unknown demotes unknown names only")
  func policy() {
    let unknown = Diagnostic(Diagnostic.Message("unknown-key", "unknown key 'x' in the recipe"))
    let parameter = Diagnostic(Diagnostic.Message("unknown-parameter", "unknown parameter 'y'"))
    let other = Diagnostic(Diagnostic.Message("missing-key", "the recipe needs 'merge_method'"))
    let strict = DiagnosticPolicy().applied(to: [other, unknown, parameter])
    #expect(strict.map(\.severity) == [.error, .error, .error])
    #expect(strict.map(\.notes.count) == [0, 1, 0])
    let lenient = DiagnosticPolicy(allowUnknown: true).applied(to: [other, unknown, parameter])
    #expect(lenient.map(\.severity) == [.error, .warning, .warning])
    #expect(lenient.allSatisfy { $0.notes.isEmpty })
  }

  @Test("suggestions find likely typos and nothing else")
  func suggestions() {
    let names = ["density", "weight", "gamma", "epsilon", "lambda"]
    #expect(Suggestion.closest(to: "desnity", in: names) == "density")
    #expect(Suggestion.closest(to: "wieght", in: names) == "weight")
    #expect(Suggestion.closest(to: "Density", in: names) == "density")
    #expect(Suggestion.closest(to: "dare-ties", in: ["dare_ties", "ties"]) == "dare_ties")
    #expect(Suggestion.closest(to: "basemodel", in: ["base_model", "models"]) == "base_model")
    #expect(Suggestion.closest(to: "temperature", in: names) == nil)
  }
}
