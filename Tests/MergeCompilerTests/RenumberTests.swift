import Testing

@testable import MergeCompiler

/// A layer tensor's name with its layer number replaced, as the output names it.
struct RenumberTests {
  /// The rule spelled out over the name's dot-separated parts: the first part between two
  /// dots (never the first or the last) made of ASCII digits only becomes `layer`.
  static func reference(_ name: String, _ layer: Int) -> String {
    var parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
    for i in 1..<max(1, parts.count - 1)
    where !parts[i].isEmpty && parts[i].allSatisfy({ $0.isASCII && $0.isNumber }) {
      parts[i] = String(layer)
      break
    }
    return parts.joined(separator: ".")
  }

  @Test("the first all-digit part between two dots is the layer; other names are unchanged")
  func renumbered() {
    #expect(
      Resolver.renumber("model.layers.10.mlp.up_proj.weight", to: 3)
        == "model.layers.3.mlp.up_proj.weight")
    #expect(
      Resolver.renumber("model.layers.007.self_attn.q_proj.weight", to: 12)
        == "model.layers.12.self_attn.q_proj.weight")
    // Only the first; a leading or trailing number is not a layer.
    #expect(Resolver.renumber("h.1.2.w", to: 9) == "h.9.2.w")
    #expect(Resolver.renumber("1.h.w", to: 9) == "1.h.w")
    #expect(Resolver.renumber("h.w.1", to: 9) == "h.w.1")
    #expect(Resolver.renumber("h..1.w", to: 9) == "h..9.w")
    // Digits other than ASCII's, and parts mixing digits and letters, are not numbers.
    #expect(Resolver.renumber("h.\u{0661}.w", to: 9) == "h.\u{0661}.w")
    #expect(Resolver.renumber("h.1a.w", to: 9) == "h.1a.w")
    #expect(Resolver.renumber("model.norm.weight", to: 4) == "model.norm.weight")
    #expect(Resolver.renumber("", to: 4) == "")
    #expect(Resolver.renumber("é.12.ü", to: 4) == "é.4.ü")
  }

  @Test("the same names as the rule spelled out, over every short name of these characters")
  func sameAsReference() {
    // Every name of up to five characters from dots, digits, a letter and a non-ASCII digit.
    let alphabet: [Character] = [".", "1", "0", "a", "\u{0662}"]
    var names = [""]
    var all: [String] = [""]
    for _ in 0..<5 {
      names = names.flatMap { prefix in alphabet.map { prefix + String($0) } }
      all += names
    }
    #expect(all.count == 3906)
    for name in all {
      #expect(Resolver.renumber(name, to: 42) == Self.reference(name, 42), "\(name)")
    }
  }
}
