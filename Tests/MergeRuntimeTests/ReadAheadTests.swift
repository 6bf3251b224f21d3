import Testing

@testable import MergeRuntime

/// What the run reads into the page cache ahead of the tensor it computes, and in what order.
struct ReadAheadTests {
  @Test("the steps after the next are read ahead as the window holds them, each once")
  func windowOfSteps() {
    // Bytes mapped by each step; the window holds 3.
    let ahead = MergeRunner.ReadAhead(mapped: [10, 1, 1, 1, 5, 1, 1, 9, 1], window: 3)
    // Step 0 computes and maps step 1: steps 2 and 3 fit, 4 does not.
    #expect(ahead.beyond(1) == 2..<4)
    // Step 1 maps step 2: step 3 is read already, and 4 does not fit after it.
    #expect(ahead.beyond(2) == 4..<4)
    // Step 2 maps step 3: step 4, the one after it, is read though it is larger than the window.
    #expect(ahead.beyond(3) == 4..<5)
    // Step 3 maps step 4: steps 5 and 6 fit, 7 does not.
    #expect(ahead.beyond(4) == 5..<7)
    #expect(ahead.beyond(5) == 7..<7)
    #expect(ahead.beyond(6) == 7..<8)
    #expect(ahead.beyond(7) == 8..<9)
    #expect(ahead.beyond(8) == 9..<9)
  }

  @Test("inputs are read a piece of each in turn, so a pass's first blocks arrive first")
  func interleavedPieces() {
    let pieces = interleaved([100..<250, 1000..<1050, 0..<0, 5000..<5100], chunk: 50)
    let expected: [(Int, Range<Int>)] = [
      (0, 100..<150), (1, 1000..<1050), (3, 5000..<5050),
      (0, 150..<200), (3, 5050..<5100),
      (0, 200..<250),
    ]
    #expect(pieces.map(\.0) == expected.map(\.0))
    #expect(pieces.map(\.1) == expected.map(\.1))
  }
}
