import Testing
import _TestSupport

@testable import MergeRecipe

@Suite struct YAMLParserTests {
  func root(_ text: String) throws -> YAMLNode {
    let result = try YAMLParser.parse(text)
    return try #require(result.documents.first?.root)
  }

  @Test("every scalar keeps its 1-based line and column")
  func scalarRanges() throws {
    let marked = MarkedText(
      """
      merge_method: 1️⃣ties
      models:
        - model: 2️⃣../ft0
          parameters: {weight: 3️⃣0.5}
      """)
    let node = try root(marked.text)
    let pairs = try #require(node.mapping)
    #expect(pairs[0].value.scalar?.value == "ties")
    #expect(pairs[0].value.range.start == marked["1️⃣"])
    #expect(pairs[0].value.range.end == SourceLocation(line: 1, column: 19))
    let entry = try #require(pairs[1].value.sequence?.first?.mapping)
    #expect(entry[0].value.range.start == marked["2️⃣"])
    let params = try #require(entry[1].value.mapping)
    #expect(params[0].value.range.start == marked["3️⃣"])
    #expect(params[0].value.resolved == .float(0.5))
  }

  @Test("aliases copy the anchored node and merge keys fill in missing keys")
  func aliasesAndMergeKeys() throws {
    let node = try root(
      """
      defaults: &d {weight: 0.5, density: 0.3}
      a: *d
      b:
        <<: *d
        density: 0.9
      """)
    let pairs = try #require(node.mapping)
    #expect(pairs[1].value.mapping?.count == 2)
    let b = try #require(pairs[2].value.mapping)
    #expect(b.map { $0.key.scalar?.value } == ["density", "weight"])
    #expect(b[0].value.resolved == .float(0.9))
    #expect(b[1].value.resolved == .float(0.5))
  }

  @Test("several documents are kept in order")
  func multipleDocuments() throws {
    let result = try YAMLParser.parse("name: a\n---\nname: b\n---\nname: c\n")
    #expect(result.documents.count == 3)
    #expect(
      result.documents.map { $0.root?.mapping?.first?.value.scalar?.value } == ["a", "b", "c"])
    #expect(result.documents[1].range.start.line == 2)
  }

  @Test("a duplicate key is reported with both locations")
  func duplicateKey() throws {
    let result = try YAMLParser.parse("a: 1\nb: 2\na: 3\n")
    #expect(result.problems.count == 1)
    let problem = try #require(result.problems.first)
    #expect(problem.message == "duplicate key 'a'")
    #expect(problem.range?.start == SourceLocation(line: 3, column: 1))
    #expect(problem.notes.first?.range?.start == SourceLocation(line: 1, column: 1))
    // The first value is kept.
    #expect(result.documents[0].root?.mapping?.first?.value.resolved == .int(1))
  }

  @Test("a syntax error names its line and column")
  func syntaxError() {
    #expect {
      _ = try YAMLParser.parse("a: [1, 2\nb: 3\n")
    } throws: { error in
      guard let e = error as? YAMLError else { return false }
      return e.message.hasPrefix("YAML syntax error") && e.range?.start.line == 2
    }
  }

  @Test("an undefined alias is an error")
  func undefinedAlias() {
    #expect(throws: YAMLError.self) { _ = try YAMLParser.parse("a: *nothing\n") }
  }

  @Test("an alias bomb is stopped before it expands")
  func aliasBomb() {
    var text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
    for i in 1..<12 {
      text +=
        "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ")
        + "]\n"
    }
    #expect {
      _ = try YAMLParser.parse(text)
    } throws: { error in
      (error as? YAMLError)?.message.contains("expands to more than") == true
    }
  }

  @Test("nesting deeper than the limit is an error, not a stack overflow")
  func deepNesting() {
    let text = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
    #expect(throws: YAMLError.self) { _ = try YAMLParser.parse(text) }
  }

  struct ScalarCase: Sendable, CustomTestStringConvertible {
    var text: String
    var expected: YAMLValue
    var testDescription: String { text }
  }

  @Test(
    "plain scalars resolve as mergekit's YAML reader sees them",
    arguments: [
      ScalarCase(text: "0.5", expected: .float(0.5)),
      ScalarCase(text: "1e-5", expected: .float(1e-5)),
      ScalarCase(text: "1.0e-6", expected: .float(1e-6)),
      ScalarCase(text: "-3", expected: .int(-3)),
      ScalarCase(text: "0x10", expected: .int(16)),
      ScalarCase(text: "010", expected: .int(8)),
      ScalarCase(text: "1_000", expected: .int(1000)),
      ScalarCase(text: ".5", expected: .float(0.5)),
      ScalarCase(text: ".inf", expected: .float(.infinity)),
      ScalarCase(text: "yes", expected: .bool(true)),
      ScalarCase(text: "Off", expected: .bool(false)),
      ScalarCase(text: "true", expected: .bool(true)),
      ScalarCase(text: "~", expected: .null),
      ScalarCase(text: "null", expected: .null),
      ScalarCase(text: "'0.5'", expected: .string("0.5")),
      ScalarCase(text: "\"true\"", expected: .string("true")),
      ScalarCase(text: "!!str 5", expected: .string("5")),
      ScalarCase(text: "1.2.3", expected: .string("1.2.3")),
      ScalarCase(text: "e5", expected: .string("e5")),
      ScalarCase(text: "high", expected: .string("high")),
    ])
  func scalarResolution(_ c: ScalarCase) throws {
    let node = try root("v: \(c.text)\n")
    #expect(node.mapping?.first?.value.resolved == c.expected)
  }

  @Test(".nan resolves to NaN")
  func nan() throws {
    let node = try root("v: .nan\n")
    guard case .float(let d)? = node.mapping?.first?.value.resolved else {
      Issue.record("not a float")
      return
    }
    #expect(d.isNaN)
  }

  @Test("a control character is a reader error naming the problem, not a crash")
  func controlCharacter() {
    #expect {
      _ = try YAMLParser.parse("merge_method: ties\u{1}\n")
    } throws: { error in
      guard let e = error as? YAMLError else { return false }
      return e.message == "the text cannot be read as YAML: control characters are not allowed"
        && e.range?.start == SourceLocation(line: 1, column: 19)
    }
  }

}
